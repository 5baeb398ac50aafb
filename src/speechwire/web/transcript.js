// TranscriptView: committed lines (with their times) above the interim text, which is shown
// apart (italic, dimmed) because it may still change.

const fmt = (s) => {
  if (s == null) return "";
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, "0")}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
};

export class TranscriptView {
  /** @param {HTMLElement} element  the container; it is filled with an <ol> and a <p>. */
  constructor(element) {
    this.element = element;
    this.element.classList.add("sw-transcript");
    this.list = document.createElement("ol");
    this.list.className = "sw-lines";
    this.interim = document.createElement("p");
    this.interim.className = "sw-interim";
    this.interim.setAttribute("aria-live", "polite");
    element.replaceChildren(this.list, this.interim);
  }

  /** Follow a MicTranscriber's events. */
  attach(transcriber) {
    transcriber.addEventListener("partial", (e) => this.setInterim(e.detail.text));
    transcriber.addEventListener("committed", (e) => this.addLine(e.detail));
    transcriber.addEventListener("timestamps", (e) => this.updateLine(e.detail));
    return this;
  }

  setInterim(text) {
    this.interim.textContent = text;
  }

  addLine(line) {
    const item = document.createElement("li");
    item.className = "sw-committed";
    const time = document.createElement("time");
    time.textContent = fmt(line.startS);
    const text = document.createElement("span");
    text.className = "sw-text";
    text.textContent = line.text;
    item.append(time, text);
    line.element = item;
    this.list.append(item);
    this.interim.textContent = "";
    item.scrollIntoView?.({ block: "nearest" });
  }

  updateLine(line) {
    if (!line.element) return;
    line.element.querySelector("time").textContent = fmt(line.startS);
    line.element.title = `${fmt(line.startS)}–${fmt(line.endS)}, final ${Math.round(line.latencyMs)} ms after speech ended`;
  }

  /** The committed text, lines joined by spaces. */
  text() {
    return [...this.list.querySelectorAll(".sw-text")].map((n) => n.textContent).join(" ");
  }

  clear() {
    this.list.replaceChildren();
    this.interim.textContent = "";
  }
}

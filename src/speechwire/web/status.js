// StatusIndicator: a dot and a word for a Connection's state, with the retry countdown while
// reconnecting. data-state on the element carries the state for styles and tests.

export class StatusIndicator {
  constructor(element, connection, label = "") {
    this.element = element;
    this.connection = connection;
    this.label = label;
    element.classList.add("sw-status");
    this.timer = null;
    this.history = [];
    connection.addEventListener("state", (e) => this.render(e.detail));
    this.render({ state: connection.state, attempt: 0, retryAt: 0 });
  }

  render(detail) {
    if (this.history.at(-1) !== detail.state) this.history.push(detail.state);
    clearInterval(this.timer);
    const draw = () => {
      let text = detail.state;
      if (detail.state === "reconnecting") {
        const left = Math.max(0, (detail.retryAt - performance.now()) / 1000);
        text = `reconnecting in ${left.toFixed(1)} s (attempt ${detail.attempt})`;
      } else if (detail.state === "failed" && this.connection.lastError) {
        text = `failed: ${this.connection.lastError}`;
      }
      this.element.dataset.state = detail.state;
      this.element.textContent = this.label ? `${this.label}: ${text}` : text;
    };
    draw();
    if (detail.state === "reconnecting") this.timer = setInterval(draw, 100);
  }
}

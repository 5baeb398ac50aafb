// LatencyPanel: the figures a voice app lives by, as last / p50 / p95 over the session.
// Metrics are recorded by name; gauges (buffer depth) show their current value.

export function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

const LABELS = {
  time_to_first_audio: "Time to first audio",
  time_to_first_sound: "Time to first sound",
  end_of_speech_to_final: "End of speech → final text",
  round_trip: "Round trip (HTTP)",
  buffer: "Player buffer",
};

export class LatencyPanel {
  constructor(element) {
    this.element = element;
    element.classList.add("sw-latency");
    this.samples = {};
    this.gauges = {};
    this.table = document.createElement("table");
    element.replaceChildren(this.table);
    this.render();
  }

  record(name, ms) {
    (this.samples[name] ??= []).push(ms);
    if (this.samples[name].length > 1000) this.samples[name].shift();
    this.render();
  }

  gauge(name, ms) {
    this.gauges[name] = ms;
    this.render();
  }

  summary() {
    const out = {};
    for (const [name, values] of Object.entries(this.samples)) {
      out[name] = { n: values.length, last: values.at(-1), p50: percentile(values, 50), p95: percentile(values, 95) };
    }
    return out;
  }

  render() {
    const ms = (v) => (v == null ? "–" : `${Math.round(v)} ms`);
    const rows = [["", "last", "p50", "p95", "n"]];
    for (const [name, s] of Object.entries(this.summary())) {
      rows.push([LABELS[name] ?? name, ms(s.last), ms(s.p50), ms(s.p95), String(s.n)]);
    }
    for (const [name, v] of Object.entries(this.gauges)) rows.push([LABELS[name] ?? name, ms(v), "", "", ""]);
    this.table.replaceChildren(
      ...rows.map((cells, i) => {
        const tr = document.createElement("tr");
        tr.append(
          ...cells.map((c) => {
            const td = document.createElement(i === 0 ? "th" : "td");
            td.textContent = c;
            return td;
          }),
        );
        return tr;
      }),
    );
  }
}

/** Round-trip time to the server: a small GET on the same (kept-alive) HTTP connection. */
export async function measureRoundTrip(baseUrl = location.origin) {
  const t0 = performance.now();
  const response = await fetch(new URL("/healthz", baseUrl), { cache: "no-store" });
  await response.arrayBuffer();
  return performance.now() - t0;
}

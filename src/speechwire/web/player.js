// TTSPlayer: streams PCM into an AudioWorklet ring buffer and plays it with minimal latency.
//
//   const player = new TTSPlayer({ sampleRate: 22050 });
//   await player.start();              // after a user gesture in real browsers
//   player.push(int16Samples);         // as chunks arrive
//   player.end();                      // nothing more for now: draining is not an underrun
//   player.interrupt();                // barge-in: short fade, then silence
//   player.stats                       // { queuedMs, underruns, overruns, playedMs, playing }

export class TTSPlayer extends EventTarget {
  constructor({ sampleRate = 22050, cushionMs = 120, capacitySeconds = 120, fadeMs = 25, tap = false } = {}) {
    super();
    this.sampleRate = sampleRate;
    this.cushionMs = cushionMs;
    this.capacitySeconds = capacitySeconds;
    this.fadeMs = fadeMs;
    this.tapEnabled = tap;
    this.context = null;
    this.node = null;
    this.stats = { queuedMs: 0, underruns: 0, overruns: 0, droppedSamples: 0, playedMs: 0, playing: false, starts: 0 };
    this._tap = [];
    this._tapFlushed = null;
  }

  /** Create the audio graph. The context runs at the stream's rate, so no resampling in JS. */
  async start() {
    if (this.context) return;
    this.context = new AudioContext({ sampleRate: this.sampleRate, latencyHint: "interactive" });
    await this.context.audioWorklet.addModule(new URL("./player-worklet.js", import.meta.url));
    this.node = new AudioWorkletNode(this.context, "speechwire-player", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { cushionMs: this.cushionMs, capacitySeconds: this.capacitySeconds },
    });
    this.node.port.onmessage = (event) => this._onMessage(event.data);
    this.node.connect(this.context.destination);
    if (this.tapEnabled) this.node.port.postMessage({ type: "tap", on: true });
    await this.context.resume();
  }

  /** Queue audio: Int16Array (PCM16) or Float32Array in [-1, 1], at `sampleRate`. */
  push(samples) {
    if (!this.node) throw new Error("TTSPlayer.start() first");
    let floats = samples;
    if (samples instanceof Int16Array) {
      floats = new Float32Array(samples.length);
      for (let i = 0; i < samples.length; i++) floats[i] = samples[i] / 32768;
    }
    this.node.port.postMessage({ type: "audio", samples: floats }, [floats.buffer]);
  }

  /** The stream paused or ended: play out what is queued, and don't count the silence after. */
  end() {
    this.node?.port.postMessage({ type: "end" });
  }

  /** Fade out over `fadeMs` and drop everything queued so far (audio pushed later still plays). */
  interrupt(fadeMs = this.fadeMs) {
    this.node?.port.postMessage({ type: "interrupt", fadeMs });
  }

  /** The output as played (only with `tap: true`): Float32Array at `sampleRate`. */
  async takeTap() {
    if (!this.node) return new Float32Array(0);
    const flushed = new Promise((resolve) => (this._tapFlushed = resolve));
    this.node.port.postMessage({ type: "tapFlush" });
    await flushed;
    const total = this._tap.reduce((n, a) => n + a.length, 0);
    const out = new Float32Array(total);
    let offset = 0;
    for (const a of this._tap) {
      out.set(a, offset);
      offset += a.length;
    }
    this._tap = [];
    return out;
  }

  async close() {
    if (this.context) await this.context.close();
    this.context = null;
    this.node = null;
  }

  _onMessage(msg) {
    if (msg.type === "stats") {
      const { type, ...stats } = msg;
      this.stats = stats;
      this.dispatchEvent(new CustomEvent("stats", { detail: stats }));
    } else if (msg.type === "tap") {
      this._tap.push(msg.samples);
    } else if (msg.type === "tapFlushed") {
      this._tapFlushed?.();
    } else {
      this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
    }
  }
}

/** Decode base64 PCM16 little-endian to Int16Array. */
export function base64ToInt16(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length - (bin.length % 2));
  for (let i = 0; i < bytes.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Int16Array(bytes.buffer);
}

/** Encode Int16Array to base64 (PCM16 little-endian, as the browser's byte order is). */
export function int16ToBase64(samples) {
  const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

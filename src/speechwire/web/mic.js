// MicCapture: the microphone as 16 kHz PCM16 frames (AudioWorklet) or WebM/Opus chunks
// (MediaRecorder). MicTranscriber: those, streamed to Scribe realtime, with partial and committed
// text out, and the time from end of speech to final text measured for every committed line.
//
//   const mic = new MicCapture({ frameMs: 20 });
//   const stt = new MicTranscriber({ capture: mic });
//   stt.addEventListener("partial", (e) => show(e.detail.text));
//   stt.addEventListener("committed", (e) => add(e.detail.text, e.detail.startS));
//   await stt.start();
//
// Across a reconnect, the audio sent since the last committed text is sent again first (PCM
// mode; at most `replaySeconds`), so words spoken during the outage are transcribed once.

import { Connection, mintToken, tokenUrl } from "./connection.js";
import { audioChunkFrame } from "./wire.js";
import { int16ToBase64 } from "./player.js";

export class MicCapture extends EventTarget {
  constructor({ mode = "pcm", frameMs = 20, sampleRate = 16000, processing = false, deviceId = undefined } = {}) {
    super();
    if (mode !== "pcm" && mode !== "webm") throw new Error("mode is pcm or webm");
    this.mode = mode;
    this.frameMs = frameMs;
    this.sampleRate = sampleRate;
    this.processing = processing; // echo cancellation etc. change the signal: off unless asked
    this.deviceId = deviceId;
    this.stream = null;
    this.context = null;
    this.node = null;
    this.recorder = null;
    this.recorderStartedAt = 0;
    this.level = 0;
  }

  get running() {
    return this.stream !== null;
  }

  async start() {
    if (this.stream) return;
    const p = this.processing;
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: p, noiseSuppression: p, autoGainControl: p, channelCount: 1, deviceId: this.deviceId },
    });
    await this._startWorklet(); // in webm mode too: its levels tell where speech ended
    if (this.mode === "webm") this.startRecorder();
    this.dispatchEvent(new CustomEvent("start"));
  }

  async _startWorklet() {
    const context = new AudioContext({ sampleRate: this.sampleRate, latencyHint: "interactive" });
    this.context = context;
    await context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    const source = context.createMediaStreamSource(this.stream);
    // One silent output, connected: a node that nothing pulls may never be processed.
    this.node = new AudioWorkletNode(this.context, "speechwire-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { frameMs: this.frameMs },
    });
    this.node.port.onmessage = (event) => {
      const { pcm, rms, time } = event.data;
      if (context.state === "closed") return; // a frame that was in flight when stop() ran
      const capturedAt = performance.now() - Math.max(0, context.currentTime - time) * 1000;
      this.level = rms;
      this.dispatchEvent(new CustomEvent("frame", { detail: { pcm, rms, capturedAt } }));
    };
    source.connect(this.node);
    this.node.connect(this.context.destination);
    await this.context.resume();
  }

  /** (Re)start the MediaRecorder: each recording begins with the header its chunks need. */
  startRecorder() {
    if (this.recorder && this.recorder.state !== "inactive") this.recorder.stop();
    const recorder = new MediaRecorder(this.stream, { mimeType: "audio/webm;codecs=opus" });
    recorder.ondataavailable = (event) => {
      if (event.data.size > 0 && this.recorder === recorder) {
        this.dispatchEvent(new CustomEvent("chunk", { detail: { blob: event.data } }));
      }
    };
    this.recorder = recorder;
    this.recorderStartedAt = performance.now();
    recorder.start(this.frameMs);
  }

  async stop() {
    if (this.recorder && this.recorder.state !== "inactive") this.recorder.stop();
    this.recorder = null;
    this.node?.port.postMessage({ type: "stop" });
    if (this.context) await this.context.close();
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.context = null;
    this.node = null;
    this.dispatchEvent(new CustomEvent("stop"));
  }
}

export class MicTranscriber extends EventTarget {
  constructor({
    capture,
    baseUrl = location.origin,
    modelId = "scribe_v2_realtime",
    commitStrategy = "vad",
    vadSilenceSecs = 0.5,
    languageCode = null,
    fetchToken = mintToken,
    replaySeconds = 30,
    speechLevel = 0.01,
  } = {}) {
    super();
    this.capture = capture;
    this.replaySeconds = replaySeconds;
    this.speechLevel = speechLevel; // RMS above which a frame counts as speech (−40 dBFS)
    this.vadSilenceSecs = commitStrategy === "vad" ? vadSilenceSecs : 0;
    const params = {
      model_id: modelId,
      audio_format: capture.mode === "webm" ? "webm_opus" : "pcm_16000",
      commit_strategy: commitStrategy,
      include_timestamps: "true",
    };
    if (commitStrategy === "vad") params.vad_silence_threshold_secs = String(vadSilenceSecs);
    if (languageCode) params.language_code = languageCode;
    this.connection = new Connection(
      tokenUrl(baseUrl, "/v1/speech-to-text/realtime", params, "realtime_scribe", { fetchToken }),
      { name: "stt" },
    );
    this.lines = []; // committed: { text, startS, endS, latencyMs }
    this.partial = "";
    this._uncommitted = []; // PCM frames sent since the last committed text (for replay)
    this._marks = []; // [session sample position after a frame, wall time of its last sample]
    this._loud = []; // wall times of frames louder than speechLevel (the last minute)
    this._sessionSamples = 0;
    this._micStartedAt = 0;
    this._sendChain = Promise.resolve();
    this.connection.addEventListener("open", () => this._onOpen());
    this.connection.addEventListener("message", (e) => this._onMessage(e.detail));
    capture.addEventListener("frame", (e) => this._onFrame(e.detail));
    capture.addEventListener("chunk", (e) => this._onChunk(e.detail.blob));
  }

  get state() {
    return this.connection.state;
  }

  async start() {
    await this.connection.open();
    this._micStartedAt = performance.now();
    await this.capture.start();
  }

  /** Stop the microphone; wait (up to `waitMs`) for the last words to be committed; close. */
  async stop({ waitMs = 3000 } = {}) {
    await this.capture.stop();
    if (this.partial && this.connection.state === "open") {
      await new Promise((resolve) => {
        const done = () => resolve();
        this.addEventListener("committed", done, { once: true });
        setTimeout(done, waitMs);
      });
    }
    this.connection.close();
  }

  _onOpen() {
    this._sessionSamples = 0;
    this._marks = [];
    this.partial = "";
    if (this.capture.mode === "webm") {
      if (this.capture.running) this.capture.startRecorder();
      return;
    }
    for (const frame of this._uncommitted) this._send(frame);
  }

  _onFrame(frame) {
    if (frame.rms > this.speechLevel) {
      this._loud.push(frame.capturedAt);
      if (this._loud.length > 3000) this._loud.splice(0, 1500);
    }
    this._emit("level", { rms: frame.rms });
    if (this.capture.mode !== "pcm") return;
    this._uncommitted.push(frame);
    let total = this._uncommitted.reduce((n, f) => n + f.pcm.length, 0);
    while (total > this.replaySeconds * 16000 && this._uncommitted.length > 1) {
      total -= this._uncommitted.shift().pcm.length;
    }
    this._send(frame);
  }

  _send(frame) {
    const ok = this.connection.send(audioChunkFrame(int16ToBase64(frame.pcm), { sampleRate: 16000 }));
    if (ok) {
      this._sessionSamples += frame.pcm.length;
      this._marks.push([this._sessionSamples, frame.capturedAt]);
      if (this._marks.length > 6000) this._marks.splice(0, 3000);
    }
  }

  _onChunk(blob) {
    // Chunks must arrive in order; blob.arrayBuffer() is async, so chain the sends.
    this._sendChain = this._sendChain.then(async () => {
      const bytes = new Uint8Array(await blob.arrayBuffer());
      let bin = "";
      for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      this.connection.send(audioChunkFrame(btoa(bin)));
    });
  }

  /** Wall-clock time (performance.now) at which session audio second `t` was captured. */
  _wallTime(t) {
    if (this.capture.mode === "webm") return this.capture.recorderStartedAt + t * 1000;
    const sample = t * 16000;
    for (const [end, at] of this._marks) {
      if (end >= sample) return at - ((end - sample) / 16000) * 1000;
    }
    const last = this._marks.at(-1);
    return last ? last[1] : performance.now();
  }

  /** When the committed words' speech really ended: the last loud frame within them (a
   *  recogniser's word-end times are estimates), not after `now` minus the VAD's silence wait
   *  (later sound belongs to the next utterance); their end time when no frame was loud. */
  _endOfSpeech(start, end, now) {
    const limit = Math.min(end + 300, now - this.vadSilenceSecs * 1000);
    let last = null;
    for (let i = this._loud.length - 1; i >= 0; i--) {
      const t = this._loud[i];
      if (t < start) break;
      if (t <= limit) {
        last = t;
        break;
      }
    }
    return last ?? end;
  }

  _onMessage(msg) {
    switch (msg.message_type) {
      case "session_started":
        this._emit("session", msg);
        break;
      case "partial_transcript":
        this.partial = msg.text;
        this._emit("partial", { text: msg.text });
        break;
      case "committed_transcript":
        this._uncommitted = []; // everything sent so far is committed (VAD commits at silence)
        this.partial = "";
        if (msg.text.trim()) {
          const line = { text: msg.text.trim(), startS: null, endS: null, latencyMs: null, at: new Date() };
          this.lines.push(line);
          this._emit("committed", line);
        } else {
          this._emit("partial", { text: "" });
        }
        break;
      case "committed_transcript_with_timestamps": {
        const words = (msg.words || []).filter((w) => w.type === "word");
        const line = this.lines.at(-1);
        if (!line || !words.length) break;
        const now = performance.now();
        const start = this._wallTime(words[0].start);
        const end = this._wallTime(words.at(-1).end);
        line.startS = (start - this._micStartedAt) / 1000;
        line.endS = (end - this._micStartedAt) / 1000;
        line.latencyMs = now - this._endOfSpeech(start, end, now);
        this._emit("timestamps", line);
        this._emit("latency", { name: "end_of_speech_to_final", ms: line.latencyMs });
        break;
      }
      default:
        if (msg.error || msg.message_type?.endsWith("error")) {
          this._emit("error", { error: msg.message_type, message: msg.error || msg.message });
        }
    }
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

// TTSClient: text in, audio out through a TTSPlayer, over `multi-stream-input` (one socket, a
// context per reply), so `interrupt()` cuts the current reply at once without a new connection.
//
//   const tts = new TTSClient({ player, voiceId: "joe" });
//   await tts.start();
//   tts.speak("Hello there.");         // more speak() calls extend the reply being spoken
//   tts.interrupt();                   // close its context, fade the player out
//
// A warm context is always open (initialised, kept alive), so a reply starts with one message.
// Closing a context ends its input, not its audio: the server still sends what it was given
// (as upstream does), so audio of an interrupted context is dropped here until its final.
// If the connection drops mid-reply, the text not yet voiced (known from the alignment) is sent
// again after the reconnect: nothing lost, nothing said twice.

import { Connection, mintToken, tokenUrl } from "./connection.js";
import { base64ToInt16 } from "./player.js";
import {
  advanceVoiced,
  alignedChars,
  closeContextFrame,
  closeSocketFrame,
  contextOf,
  initFrame,
  isFinal,
  keepAliveFrame,
  textFrame,
} from "./wire.js";

export class TTSClient extends EventTarget {
  constructor({
    player,
    baseUrl = location.origin,
    voiceId = "joe",
    modelId = "eleven_flash_v2_5",
    outputFormat = "pcm_22050",
    voiceSettings = null,
    fetchToken = mintToken,
    keepAliveMs = 10000,
    recordReceived = false,
  } = {}) {
    super();
    if (!outputFormat.startsWith("pcm_")) throw new Error("TTSClient plays pcm_* output formats");
    this.player = player;
    this.voiceId = voiceId;
    this.sampleRate = Number(outputFormat.split("_")[1]);
    this.voiceSettings = voiceSettings;
    this.keepAliveMs = keepAliveMs;
    this.recordReceived = recordReceived;
    this.received = []; // Int16Array chunks as the server sent them (recordReceived only)
    this.lateChunks = 0; // audio of closed contexts that arrived after their close (dropped)
    this.connection = new Connection(
      tokenUrl(
        baseUrl,
        `/v1/text-to-speech/${encodeURIComponent(voiceId)}/multi-stream-input`,
        { model_id: modelId, output_format: outputFormat, inactivity_timeout: "180" },
        "tts_websocket",
        { tokenParam: "single_use_token", fetchToken },
      ),
      { name: "tts" },
    );
    this._seq = 0;
    this._warm = null;
    this._current = null; // { id, text, voiced, t0, firstAudioMs, done }
    this._closed = new Map(); // context id → "interrupted" | "done", until its final frame
    this._pending = [];
    this._keepAlive = null;
    this.connection.addEventListener("open", () => this._onOpen());
    this.connection.addEventListener("message", (e) => this._onMessage(e.detail));
    this.connection.addEventListener("close", () => clearInterval(this._keepAlive));
    player.addEventListener("started", () => {
      const u = this._current;
      if (u && u.firstSoundMs == null && u.firstAudioMs != null) {
        u.firstSoundMs = performance.now() - u.t0;
        this._emit("latency", { name: "time_to_first_sound", ms: u.firstSoundMs });
      }
    });
  }

  get state() {
    return this.connection.state;
  }

  async start() {
    await this.player.start();
    await this.connection.open();
  }

  /** Say `text` (appended to the reply in progress, if any). */
  speak(text) {
    if (!text.trim()) return;
    if (!this._current) {
      this._current = { id: null, text: "", voiced: 0, t0: performance.now(), firstAudioMs: null, firstSoundMs: null };
    }
    const piece = text.endsWith(" ") ? text : `${text} `;
    if (this._pending.length || !this._send(piece)) this._pending.push(piece); // keep the order
  }

  /** Barge-in: close the reply's context and fade out; its late audio is dropped by context id
   *  until its final (the server keeps sending it, scheduled behind the next reply). */
  interrupt() {
    const u = this._current;
    this._current = null;
    this._pending = [];
    this.player.interrupt();
    if (u && u.id) {
      this._closed.set(u.id, "interrupted");
      this.connection.send(closeContextFrame(u.id));
    }
    this._emit("interrupted", { text: u ? u.text : "" });
  }

  close() {
    clearInterval(this._keepAlive);
    this.connection.send(closeSocketFrame());
    this.connection.close();
  }

  _newId() {
    this._seq += 1;
    return `ctx-${this._seq}-${Math.random().toString(36).slice(2, 8)}`;
  }

  _openWarm() {
    const id = this._newId();
    if (this.connection.send(initFrame({ contextId: id, voiceSettings: this.voiceSettings }))) this._warm = id;
  }

  /** Send a piece of the current reply; `text` holds exactly what was sent. */
  _send(piece) {
    const u = this._current;
    if (this.connection.state !== "open") return false;
    if (!u.id) {
      if (!this._warm) this._openWarm();
      u.id = this._warm;
      this._warm = null;
      this._openWarm();
    }
    if (!this.connection.send(textFrame(piece, { contextId: u.id, flush: true }))) return false;
    u.text += piece;
    return true;
  }

  _onOpen() {
    // A new socket: every context of the old one is gone.
    this._warm = null;
    this._openWarm();
    clearInterval(this._keepAlive);
    this._keepAlive = setInterval(() => {
      for (const id of [this._warm, this._current?.id]) {
        if (id) this.connection.send(keepAliveFrame(id));
      }
    }, this.keepAliveMs);
    const u = this._current;
    if (u && u.id) {
      // Resume: send again what the old context had not voiced yet, before anything newer.
      const rest = u.text.slice(u.voiced);
      u.id = null;
      u.text = u.text.slice(0, u.voiced);
      if (rest.trim()) this._pending.unshift(rest);
      else if (!this._pending.length) this._finish(u);
    }
    const pending = this._pending;
    this._pending = [];
    for (const [i, piece] of pending.entries()) {
      if (!this._current || !this._send(piece)) {
        this._pending = pending.slice(i);
        break;
      }
    }
  }

  _onMessage(msg) {
    const id = contextOf(msg);
    if (msg.error) {
      this._emit("error", { error: msg.error, message: msg.message });
      return;
    }
    if (this._closed.has(id)) {
      if (msg.audio && this._closed.get(id) === "interrupted") this.lateChunks += 1;
      if (isFinal(msg)) this._closed.delete(id);
      return;
    }
    const u = this._current;
    if (!u || u.id !== id) return;
    if (msg.audio) {
      const pcm = base64ToInt16(msg.audio);
      if (u.firstAudioMs == null) {
        u.firstAudioMs = performance.now() - u.t0;
        this._emit("latency", { name: "time_to_first_audio", ms: u.firstAudioMs });
      }
      if (this.recordReceived) this.received.push(pcm.slice());
      this.player.push(pcm);
      const chars = alignedChars(msg);
      if (chars) u.voiced = advanceVoiced(u.text, u.voiced, chars);
      this._emit("audio", { contextId: id, samples: pcm.length });
      if (!this._pending.length && !u.text.slice(u.voiced).trim()) this._finish(u);
    }
    if (isFinal(msg)) this._finish(u);
  }

  _finish(u) {
    if (this._current !== u) return;
    this._current = null;
    this.player.end();
    if (u.id) {
      this._closed.set(u.id, "done");
      this.connection.send(closeContextFrame(u.id));
    }
    this._emit("done", { text: u.text, firstAudioMs: u.firstAudioMs });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

// The player's audio thread: a ring buffer at the stream's sample rate, read 128 frames at a time.
//
// Why here and not in <audio>/MediaSource: only the audio thread knows exactly what has been
// played, so it alone can count underruns, fade at the right sample, and keep latency to the
// start-up cushion. Messages in: audio, end, interrupt, tap. Out: stats, drained, interrupted, tap.

class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.capacity = Math.max(1024, Math.round((o.capacitySeconds || 120) * sampleRate));
    this.ring = new Float32Array(this.capacity);
    this.cushion = Math.round(((o.cushionMs ?? 120) / 1000) * sampleRate);
    this.written = 0; // samples ever written (stream position of the write end)
    this.read = 0; // samples ever read
    this.playing = false;
    this.ended = false; // the producer said no more audio is coming for now
    this.fadeInLeft = 0;
    this.fadeInLen = Math.round(0.005 * sampleRate);
    this.fade = null; // {left, total, upTo}: an interrupt in progress
    this.underruns = 0;
    this.overruns = 0;
    this.dropped = 0;
    this.played = 0;
    this.starts = 0;
    this.tap = null;
    this.tapFill = 0;
    this.sinceStats = 0;
    this.statsEvery = Math.round(0.05 * sampleRate);
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  get queued() {
    return this.written - this.read;
  }

  onMessage(msg) {
    if (msg.type === "audio") {
      const samples = msg.samples;
      let n = samples.length;
      const room = this.capacity - this.queued;
      if (n > room) {
        this.overruns += 1;
        this.dropped += n - room;
        n = room;
      }
      for (let i = 0; i < n; i++) this.ring[(this.written + i) % this.capacity] = samples[i];
      this.written += n;
      this.ended = false;
    } else if (msg.type === "end") {
      this.ended = true;
    } else if (msg.type === "interrupt") {
      // Fade what is playing, then drop everything written before this moment (not after).
      const total = Math.max(1, Math.round((msg.fadeMs / 1000) * sampleRate));
      if (this.playing && this.queued > 0) this.fade = { left: total, total, upTo: this.written };
      else this.discard(this.written);
    } else if (msg.type === "tapFlush") {
      if (this.tap && this.tapFill > 0) {
        this.port.postMessage({ type: "tap", samples: this.tap.slice(0, this.tapFill) });
        this.tapFill = 0;
      }
      this.port.postMessage({ type: "tapFlushed" });
    } else if (msg.type === "tap") {
      this.tap = msg.on ? new Float32Array(Math.round(0.1 * sampleRate)) : null;
      this.tapFill = 0;
    }
  }

  discard(upTo) {
    if (upTo > this.read) this.read = Math.min(upTo, this.written);
    this.playing = false;
    this.fade = null;
    this.port.postMessage({ type: "interrupted", position: this.read });
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const frames = out.length;
    if (!this.playing) {
      const queued = this.queued;
      if (queued > 0 && (queued >= this.cushion || this.ended)) {
        this.playing = true;
        this.starts += 1;
        this.port.postMessage({ type: "started", at: currentTime, queued });
      }
    }
    let n = 0;
    if (this.playing) {
      n = Math.min(frames, this.queued);
      for (let i = 0; i < n; i++) {
        let v = this.ring[(this.read + i) % this.capacity];
        if (this.fadeInLeft > 0) {
          v *= 1 - this.fadeInLeft / this.fadeInLen;
          this.fadeInLeft -= 1;
        }
        if (this.fade) {
          v *= this.fade.left / this.fade.total;
          if (this.fade.left > 0) this.fade.left -= 1;
        }
        out[i] = v;
      }
      this.read += n;
      this.played += n;
      if (this.fade && this.fade.left === 0) {
        this.discard(this.fade.upTo);
      } else if (n < frames) {
        // Ran dry. Expected at the end of a stream; anywhere else it is an underrun: ramp the
        // last samples down (no click), wait for the cushion again, fade back in.
        const ramp = Math.min(n, 32);
        for (let i = 0; i < ramp; i++) out[n - ramp + i] *= 1 - (i + 1) / ramp;
        this.playing = false;
        if (this.ended) {
          this.port.postMessage({ type: "drained", position: this.read });
        } else {
          this.underruns += 1;
          this.fadeInLeft = this.fadeInLen;
        }
      }
    }
    for (let i = n; i < frames; i++) out[i] = 0;
    if (this.tap) this.record(out);
    this.sinceStats += frames;
    if (this.sinceStats >= this.statsEvery) {
      this.sinceStats = 0;
      this.postStats();
    }
    return true;
  }

  record(out) {
    for (let i = 0; i < out.length; i++) {
      this.tap[this.tapFill++] = out[i];
      if (this.tapFill === this.tap.length) {
        const size = this.tap.length;
        this.port.postMessage({ type: "tap", samples: this.tap }, [this.tap.buffer]);
        this.tap = new Float32Array(size);
        this.tapFill = 0;
      }
    }
  }

  postStats() {
    this.port.postMessage({
      type: "stats",
      queuedMs: (this.queued / sampleRate) * 1000,
      underruns: this.underruns,
      overruns: this.overruns,
      droppedSamples: this.dropped,
      playedMs: (this.played / sampleRate) * 1000,
      playing: this.playing,
      starts: this.starts,
    });
  }
}

registerProcessor("speechwire-player", PlayerProcessor);

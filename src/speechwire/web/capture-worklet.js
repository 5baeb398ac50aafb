// The microphone's audio thread: float samples in, PCM16 frames of `frameMs` out.
//
// The AudioContext runs at 16 kHz (the browser resamples the device, with a proper filter), so
// this only converts and frames. Each frame carries the context time of its last sample, which
// the page maps to wall-clock time to measure end of speech → final text.

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = (options.processorOptions || {}).frameMs || 20;
    this.size = Math.round((frameMs / 1000) * sampleRate);
    this.frame = new Int16Array(this.size);
    this.fill = 0;
    this.sumSquares = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data.type === "stop") this.running = false;
    };
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return this.running;
    for (let i = 0; i < channel.length; i++) {
      const v = Math.max(-1, Math.min(1, channel[i]));
      this.sumSquares += v * v;
      this.frame[this.fill++] = v < 0 ? v * 32768 : v * 32767;
      if (this.fill === this.size) {
        const rms = Math.sqrt(this.sumSquares / this.fill);
        this.port.postMessage({ pcm: this.frame, rms, time: currentTime + (i + 1) / sampleRate }, [
          this.frame.buffer,
        ]);
        this.frame = new Int16Array(this.size); // the old buffer was transferred (now empty)
        this.fill = 0;
        this.sumSquares = 0;
      }
    }
    return this.running;
  }
}

registerProcessor("speechwire-capture", CaptureProcessor);

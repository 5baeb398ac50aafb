"""Audio as bytes and samples: ``AudioFormat`` (the protocols' ``output_format`` / ``audio_format``
names), streaming encoders and decoders (PCM, G.711, MP3, Ogg Opus, anything FFmpeg reads),
``soxr`` resampling, WAV files, character alignment, and ``PlaybackBuffer`` (a listener's jitter
buffer).

The bottom layer: it imports nothing of speechwire outside this package and knows nothing of
sockets, the wire protocol, engines or clocks (time, where it matters, is passed in as samples).
"""

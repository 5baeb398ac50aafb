"""The HTTP and WebSocket routes, one module per concern: TTS WebSockets (``stream-input``,
``multi-stream-input``), TTS over HTTP, realtime and batch STT, the voice/model catalog, the
account endpoints and the web page. Each route says what its events mean; it knows nothing of
how frames are received, how callers are admitted or how the cloud is reached."""

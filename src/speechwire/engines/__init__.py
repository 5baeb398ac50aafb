"""Speech engines and the policy around them: the ``TTSEngine`` / ``STTEngine`` protocols, a
registry that maps model and voice ids to engines, the implementations (Piper, espeak-ng,
Whisper, Moonshine, Silero VAD, the ElevenLabs cloud relay) with their once-only model loading
(``base.Lazy``), character timing, the earliest-deadline-first ``EnginePool`` that runs engine
work off the event loop, and the engine-agnostic policies on either side: synthesis
(``synthesis``: segmenting, the quick first phrase, seams, encoding) and recognition
(``endpointing``: the end-pointing state machine; ``streaming``: partials, speculative
finalisation, decode scheduling).

Imports only ``audio``. Knows nothing of the wire protocol's messages, the server, the client,
FastAPI or Prometheus (the pool reports waits through a callback).
"""

import os

# onnxruntime (Piper, Silero VAD) otherwise starts Microsoft's telemetry, which writes a device id
# and an event database under ~/.cache and carries upload code: a local engine sends nothing.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

"""The resumable clients' old home: ``TextToSpeechStream`` and ``RealtimeTranscriber`` take
``reconnect=`` now, and these names are them with reconnection on (README and users import them)."""

from speechwire.client.stt import ResumableTranscriber
from speechwire.client.tts import ResumableTextToSpeech

__all__ = ["ResumableTextToSpeech", "ResumableTranscriber"]

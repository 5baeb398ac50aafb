"""Audio formats by their ElevenLabs names (``pcm_16000``, ``mp3_44100_128``, ``opus_48000_64``…)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Codec = Literal["pcm", "ulaw", "alaw", "mp3", "opus", "webm"]

_BITRATES = (32, 64, 96, 128, 192)
TTS_OUTPUT_FORMATS: tuple[str, ...] = (
    *(f"pcm_{hz}" for hz in (8000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "ulaw_8000",
    "alaw_8000",
    *(f"mp3_{spec}" for spec in ("22050_32", "24000_48", *(f"44100_{kbps}" for kbps in _BITRATES))),
    *(f"opus_48000_{kbps}" for kbps in _BITRATES),
)
STT_INPUT_FORMATS: tuple[str, ...] = (
    *(f"pcm_{hz}" for hz in (8000, 16000, 22050, 24000, 44100, 48000)),
    "ulaw_8000",
    "webm_opus",
)
"""What realtime STT accepts: upstream's formats, plus ``webm_opus`` (a speechwire extension): the
WebM/Opus stream a browser's ``MediaRecorder`` produces, chunks in order, decoded on the server."""

_CONTENT_TYPES: dict[str, str] = {
    "pcm": "audio/pcm",
    "ulaw": "audio/basic",
    "alaw": "audio/x-alaw-basic",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "webm": "audio/webm",
}


class UnsupportedFormat(ValueError):
    """A format name this server cannot produce or accept."""


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """One wire format: codec, sample rate, and bit rate for compressed codecs. Always mono."""

    name: str
    codec: Codec
    sample_rate: int
    bitrate_kbps: int | None = None

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.codec]

    @property
    def bytes_per_sample(self) -> int | None:
        """Bytes per sample for uncompressed codecs (None for mp3/opus)."""
        return {"pcm": 2, "ulaw": 1, "alaw": 1}.get(self.codec)

    @staticmethod
    def parse(name: str, allowed: tuple[str, ...] = TTS_OUTPUT_FORMATS) -> AudioFormat:
        """Parse a format name, or raise ``UnsupportedFormat`` listing what is supported."""
        if name not in allowed:
            raise UnsupportedFormat(f"Unsupported audio format {name!r}. Supported: {', '.join(allowed)}.")
        if name == "webm_opus":
            return AudioFormat(name, "webm", 48000)
        parts = name.split("_")
        codec = parts[0]
        rate = int(parts[1])
        bitrate = int(parts[2]) if len(parts) > 2 else None
        return AudioFormat(name, codec, rate, bitrate)  # type: ignore[arg-type]

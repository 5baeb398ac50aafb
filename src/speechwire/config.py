"""Settings from the environment and ``.env`` (prefix ``SPEECHWIRE_``)."""

from __future__ import annotations

import os

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


class Settings(BaseSettings):
    """Server settings. Every field can be set as ``SPEECHWIRE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SPEECHWIRE_", env_file=".env", extra="ignore")

    tts_engines: list[str] = Field(default_factory=lambda: ["piper", "espeak"])
    """Local TTS engines to load, in order; the first one's first voice is not necessarily default."""
    tts_default_voice: str = "joe"
    tts_voice_aliases: dict[str, str] = Field(default_factory=dict)
    """Extra voice ids (for example ElevenLabs ids your code already uses) mapped to local voices."""
    piper_threads: int = Field(default_factory=_default_threads)
    """onnxruntime intra-op threads per Piper synthesis: explicit, so engines don't fight for cores."""
    tts_workers: int = 1
    """Engine calls that run at once; each uses ``piper_threads`` cores."""
    quick_first_words: int = 2
    """Words split off the start of a turn so its first audio is ready sooner (0 turns it off)."""
    max_message_bytes: int = 1 << 20
    """Largest client frame accepted; larger ones get the protocol's error and close 1008."""
    max_buffer_chars: int = 100_000
    stt_engines: list[str] = Field(default_factory=lambda: ["moonshine", "whisper", "whisper_base"])
    """Local STT engines to load; the first is what ``scribe_v2_realtime`` maps to for English,
    ``whisper_base`` (multilingual) serves every other ``language_code``."""
    stt_workers: int = Field(default_factory=_default_threads)
    """STT decodes that run at once, one per core (a separate pool from TTS, so a long decode never
    delays speech)."""
    stt_max_chunk_seconds: float = 5.0
    """Largest audio chunk accepted; larger ones get ``chunk_size_exceeded``."""
    send_timeout_s: float = 10.0
    """A client that takes no data for this long is disconnected (its session ends)."""
    max_sessions: int = 64
    """Open WebSocket sessions (TTS and STT together) beyond which new ones are refused with
    ``resource_exhausted`` and close 1013, instead of every session slowing down."""
    drain_s: float = 10.0
    """On SIGTERM, how long open sessions may take to finish before they are closed with 1001."""
    ping_interval_s: float = 10.0
    """WebSocket pings from the server; a peer that misses ``ping_timeout_s`` is dropped, so dead
    connections (a laptop lid closed) free their session within seconds, not TCP's minutes."""
    ping_timeout_s: float = 10.0
    api_keys: list[SecretStr] = Field(default_factory=list)
    """Keys that open sessions and mint single-use tokens (JSON list in ``SPEECHWIRE_API_KEYS``).
    Empty means a development server that admits everyone."""

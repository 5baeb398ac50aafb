"""The server's side of synthesis: a ``SpeechPipeline`` (``engines/synthesis.py``) for a stream,
with the server's pool, settings and metrics, and what the engine honours of ``voice_settings``."""

from __future__ import annotations

from speechwire.audio.formats import AudioFormat
from speechwire.engines.base import SynthesisOptions, TTSEngine, VoiceInfo
from speechwire.engines.synthesis import SpeechPipeline
from speechwire.protocol.tts import VoiceSettings
from speechwire.server.state import ServerState


def pipeline_for(
    state: ServerState,
    engine: TTSEngine,
    voice: VoiceInfo,
    voice_settings: VoiceSettings | None,
    fmt: AudioFormat,
    ssml: bool = False,
) -> SpeechPipeline:
    """The pipeline for one stream: the engine honours ``speed`` from the voice settings."""
    return SpeechPipeline(
        engine,
        voice,
        options_for(voice_settings),
        fmt,
        state.tts_pool,
        state.settings.quick_first_words,
        lambda seconds, first: _count(state, seconds, first),
        ssml,
    )


def options_for(voice_settings: VoiceSettings | None) -> SynthesisOptions:
    """What the engine honours of ``voice_settings``: ``speed``."""
    speed = voice_settings.speed if voice_settings is not None and voice_settings.speed else 1.0
    return SynthesisOptions(speed=speed)


def _count(state: ServerState, seconds: float, first: float | None) -> None:
    if first is not None:
        state.metrics.tts_first_audio.observe(first)
    state.metrics.audio_out.inc(seconds)

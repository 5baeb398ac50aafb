"""Which engine speaks which voice, and what each model id means here.

Cloud model ids (``eleven_flash_v2_5``…) are accepted so existing ElevenLabs client code works
unchanged: they select the voice's own local engine. ``speechwire_<engine>`` ids pick an engine
explicitly. ElevenLabs' premade voice ids (``engines.premade``) are aliases of local voices.
"""

from __future__ import annotations

from dataclasses import dataclass

from speechwire.engines.base import TTSEngine, VoiceInfo
from speechwire.engines.premade import PREMADE_VOICES, PremadeVoice, premade_aliases

CLOUD_TTS_MODELS: dict[str, str] = {
    "eleven_flash_v2_5": "Eleven Flash v2.5",
    "eleven_flash_v2": "Eleven Flash v2",
    "eleven_turbo_v2_5": "Eleven Turbo v2.5",
    "eleven_turbo_v2": "Eleven Turbo v2",
    "eleven_multilingual_v2": "Eleven Multilingual v2",
    "eleven_monolingual_v1": "Eleven English v1",
    "eleven_multilingual_v1": "Eleven Multilingual v1",
    "eleven_v3": "Eleven v3",
}

LOCAL_NOTES: dict[str, str] = {
    "eleven_v3": (
        "Served by the voice's local engine: v3's expressiveness is not reproduced, and audio "
        "tags such as [laughs] are removed from HTTP requests rather than spoken."
    ),
}
"""What differs from upstream for a model id, shown in ``GET /v1/models``."""

VOICE_SETTING_HINT = (
    "Map it to a local voice with SPEECHWIRE_TTS_VOICE_ALIASES (a JSON object, for example "
    '{"<voice_id>": "joe"}) or serve every unknown id with SPEECHWIRE_TTS_UNKNOWN_VOICE.'
)


class UnknownVoice(LookupError):
    pass


class UnknownModel(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ModelInfo:
    model_id: str
    name: str
    description: str
    engine: str | None
    """The engine it selects; None means the voice's own engine."""


class EngineRegistry:
    """Engines by name, voices by id (with aliases), models by id."""

    def __init__(
        self,
        engines: list[TTSEngine],
        default_voice: str,
        aliases: dict[str, str] | None = None,
        premade_by_gender: dict[str, str] | None = None,
        unknown_voice: str | None = None,
    ) -> None:
        """``aliases`` win over the premade table; ``premade_by_gender`` picks the local voice of
        each premade gender (default: ``default_voice``); ``unknown_voice``, when set, speaks any
        id that is neither a voice nor an alias (otherwise such ids are ``UnknownVoice``)."""
        self.engines = {e.name: e for e in engines}
        self._voices = {voice.voice_id: (engine, voice) for engine in engines for voice in engine.voices()}
        if not self._voices:
            raise ValueError("no TTS voices: configure at least one engine")
        if default_voice not in self._voices:
            # Only some engines are loaded (for example espeak alone): default to what exists.
            default_voice = next(iter(self._voices))
        self.default_voice = default_voice
        by_gender = {g: v for g, v in (premade_by_gender or {}).items() if v in self._voices}
        self.aliases = {
            "default": default_voice,
            **premade_aliases(default_voice, by_gender),
            **(aliases or {}),
        }
        self.unknown_voice = unknown_voice if unknown_voice in self._voices else None

    def lookup(self, voice_id: str) -> VoiceInfo | None:
        """The local voice an id (a voice, an alias or a premade id) speaks with, if any."""
        entry = self._voices.get(self.aliases.get(voice_id, voice_id))
        return entry[1] if entry is not None else None

    def premade(self) -> list[tuple[PremadeVoice, VoiceInfo]]:
        """Every premade voice with the local voice that speaks it (unresolvable ones left out)."""
        return [(p, local) for p in PREMADE_VOICES if (local := self.lookup(p.voice_id)) is not None]

    def voices(self) -> list[VoiceInfo]:
        return [v for _, v in self._voices.values()]

    def models(self) -> list[ModelInfo]:
        models = [
            ModelInfo(
                mid,
                f"{name} (served locally)",
                LOCAL_NOTES.get(mid, "Accepted for compatibility; uses the voice's engine."),
                None,
            )
            for mid, name in CLOUD_TTS_MODELS.items()
        ]
        models += [
            ModelInfo(f"speechwire_{name}", f"speechwire {name}", f"Local {name} engine.", name)
            for name in self.engines
        ]
        return models

    def resolve(self, voice_id: str, model_id: str | None) -> tuple[TTSEngine, VoiceInfo]:
        """The engine and voice for a request, or ``UnknownVoice``/``UnknownModel`` saying why."""
        entry = self._voices.get(self.aliases.get(voice_id, voice_id))
        if entry is None and self.unknown_voice is not None:
            entry = self._voices[self.unknown_voice]
        if entry is None:
            local = ", ".join(sorted(self._voices))
            raise UnknownVoice(
                f"A voice with voice_id {voice_id!r} does not exist here. Local voices: {local}, "
                f"'default' and ElevenLabs' premade voice ids (GET /v1/voices). {VOICE_SETTING_HINT}"
            )
        engine, voice = entry
        if model_id is None or model_id in CLOUD_TTS_MODELS:
            return engine, voice
        if model_id.startswith("speechwire_") and model_id[len("speechwire_") :] in self.engines:
            wanted = model_id[len("speechwire_") :]
            if wanted != engine.name:
                raise UnknownVoice(
                    f"Voice {voice_id!r} is not available for model {model_id!r} (engine {wanted})."
                )
            return engine, voice
        known = ", ".join(m.model_id for m in self.models())
        raise UnknownModel(
            f"Model {model_id!r} does not exist or cannot do text-to-speech. Available: {known}."
        )

"""Which engine speaks which voice, and what each model id means here.

Cloud model ids (``eleven_flash_v2_5``…) are accepted so existing ElevenLabs client code works
unchanged: they select the voice's own local engine. ``speechwire_<engine>`` ids pick an engine
explicitly. ElevenLabs' premade voice ids (``engines.premade``) are aliases of local voices.

A ``language_code`` picks a voice that speaks it (``resolve``; the rule is in docs/voices.md):
the requested voice when it speaks that language, else the best local voice of the language
(natural before robotic, the server's default voice first). Without one the requested voice is
kept whatever the text's language: nothing here guesses the language of a text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from speechwire.engines.base import TTSEngine, VoiceInfo, primary_language
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

ENGLISH_ONLY_MODELS = frozenset({"eleven_monolingual_v1", "eleven_flash_v2", "eleven_turbo_v2"})
"""Cloud ids of English-only models: a ``language_code`` other than English is refused with them,
as upstream refuses a language a model does not speak (rather than speaking it in English)."""

LANGUAGE_ALIASES = {"nb": "no", "iw": "he", "in": "id", "cmn": "zh"}
"""Codes that name the language of another code the voices use: Bokmål is Norwegian here, and
Hebrew and Indonesian keep their old codes, Mandarin its ISO 639-3 one."""

_LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*")

VOICE_SETTING_HINT = (
    "Map it to a local voice with SPEECHWIRE_TTS_VOICE_ALIASES (a JSON object, for example "
    '{"<voice_id>": "joe"}) or serve every unknown id with SPEECHWIRE_TTS_UNKNOWN_VOICE.'
)


class UnknownVoice(LookupError):
    pass


class UnknownModel(LookupError):
    pass


class UnsupportedLanguage(LookupError):
    """A ``language_code`` that is malformed or that no voice of the model speaks here."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    model_id: str
    name: str
    description: str
    engine: str | None
    """The engine it selects; None means the voice's own engine."""
    languages: tuple[tuple[str, str], ...] = ()
    """(code, English name) of every language it speaks here, as ``GET /v1/models`` lists them."""


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
        self._models: list[ModelInfo] | None = None

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
        """Every model id, with the languages it speaks here (built once: the voices are fixed)."""
        if self._models is None:
            self._models = self._build_models()
        return list(self._models)

    def _build_models(self) -> list[ModelInfo]:
        models = [
            ModelInfo(
                mid,
                f"{name} (served locally)",
                LOCAL_NOTES.get(
                    mid,
                    "Accepted for compatibility; uses the voice's engine"
                    + (
                        " (English only)."
                        if mid in ENGLISH_ONLY_MODELS
                        else ", or the voice of language_code."
                    ),
                ),
                None,
                self._named(self._languages(mid)),
            )
            for mid, name in CLOUD_TTS_MODELS.items()
        ]
        models += [
            ModelInfo(
                f"speechwire_{name}",
                f"speechwire {name}",
                f"Local {name} engine.",
                name,
                self._named(self._languages(f"speechwire_{name}")),
            )
            for name in self.engines
        ]
        return models

    def _candidates(self, model_id: str | None) -> list[VoiceInfo]:
        """The voices a model id may switch to for a language: a ``speechwire_<engine>`` id keeps
        its engine, an English-only id its English voices, any other id every voice."""
        voices = self.voices()
        if model_id is not None and model_id.startswith("speechwire_"):
            return [v for v in voices if v.engine == model_id[len("speechwire_") :]]
        if model_id in ENGLISH_ONLY_MODELS:
            return [v for v in voices if v.language_code == "en"]
        return voices

    def _languages(self, model_id: str | None) -> list[str]:
        """The language codes a model id speaks here, in order of first voice."""
        return list(dict.fromkeys(v.language_code for v in self._candidates(model_id)))

    def _named(self, codes: list[str]) -> tuple[tuple[str, str], ...]:
        names = {v.language_code: v.language_name for v in reversed(self.voices()) if v.language_name}
        names.setdefault("en", "English")
        return tuple((code, names.get(code, code)) for code in codes)

    def languages(self, model_id: str | None = None) -> list[str]:
        """Every language code a model id (default: any) speaks here, sorted."""
        return sorted(self._languages(model_id))

    def for_language(self, voice: VoiceInfo, language_code: str, model_id: str | None = None) -> VoiceInfo:
        """The voice that speaks ``language_code``: ``voice`` itself when it speaks it, else the
        best of that language's voices (``_rank``), or ``UnsupportedLanguage`` naming the ones
        there are. Region subtags (``pt-BR``) pick among a language's voices, never refuse."""
        tag = language_code.strip()
        if not _LANGUAGE_CODE.fullmatch(tag):
            raise UnsupportedLanguage(
                f"language_code {language_code!r} is not an ISO 639-1 language code (for example "
                f"'fr'). {self._available(model_id)}"
            )
        code = primary_language(tag)
        code = LANGUAGE_ALIASES.get(code, code)
        if model_id in ENGLISH_ONLY_MODELS and code != "en":
            raise UnsupportedLanguage(
                f"Model {model_id!r} speaks English only, not {tag!r}: use eleven_flash_v2_5 or "
                "eleven_multilingual_v2 (same local voices) for other languages."
            )
        if voice.language_code == code:
            return voice
        speakers = [v for v in self._candidates(model_id) if v.language_code == code]
        if not speakers:
            model = f" with model {model_id!r}" if model_id else ""
            raise UnsupportedLanguage(
                f"No local voice speaks language_code {tag!r}{model}. {self._available(model_id)}"
            )
        return min(speakers, key=lambda v: self._rank(v, tag))

    def _rank(self, voice: VoiceInfo, tag: str) -> tuple[bool, bool, bool]:
        """Sort key, best first: natural before robotic, then the server's default voice, then
        the requested region (``pt-BR``); ties keep registration order (the language's own
        voice, ``espeak-pt``, before its variants)."""
        return (
            voice.labels.get("quality") == "robotic",
            voice.voice_id != self.default_voice,
            voice.language.lower() != tag.lower().replace("_", "-"),
        )

    def _available(self, model_id: str | None) -> str:
        return f"Languages available: {', '.join(self.languages(model_id))}."

    def resolve(
        self, voice_id: str, model_id: str | None, language_code: str | None = None
    ) -> tuple[TTSEngine, VoiceInfo]:
        """The engine and voice for a request, or ``UnknownVoice``/``UnknownModel``/
        ``UnsupportedLanguage`` saying why. With ``language_code`` the voice is one that speaks
        it (``for_language``)."""
        engine, voice = self._resolve(voice_id, model_id)
        if language_code is None:
            return engine, voice
        chosen = self.for_language(voice, language_code, model_id)
        return self._voices[chosen.voice_id][0], chosen

    def _resolve(self, voice_id: str, model_id: str | None) -> tuple[TTSEngine, VoiceInfo]:
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

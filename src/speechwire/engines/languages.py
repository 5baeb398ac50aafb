"""Languages for speech-to-text: what clients send, which engine hears it, and detection.

One rule for the realtime and the batch route (``STTRouter``):

- ``language_code`` is normalised (``normalize_language``): ISO 639-1 (``fr``), ISO 639-3
  (``fra``) or 639-2/B (``fre``), BCP-47 (``fr-FR``), or the English name (``french``), any case,
  all become Whisper's code (ISO 639-1 where one exists: ``fr``; ``haw``, ``yue``; ``jw``).
- A given language goes to the first configured engine that hears it (``STTEngine.languages``):
  English stays on the fast default (Moonshine), other languages reach the multilingual one
  (Whisper base). ``speechwire_<engine>`` picks an engine explicitly; one that cannot hear the
  language is an error, as is a language no engine hears (``NoEngine``, with the languages
  there are, for the route to put in its own error shape).
- No ``language_code`` and a multilingual engine that can detect (``LanguageDetector``): the
  session starts on the default engine and its language is detected once
  (``DetectionSchedule`` says when); ``STTRouter.settle`` then gives the engine for it.
- Reported codes are ISO 639-3 (``report_code``), as upstream's Scribe responses carry them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from speechwire.engines.base import LanguageDetector, STTEngine

WHISPER_LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("eng", "English"), "zh": ("cmn", "Chinese"), "de": ("deu", "German"),
    "es": ("spa", "Spanish"), "ru": ("rus", "Russian"), "ko": ("kor", "Korean"),
    "fr": ("fra", "French"), "ja": ("jpn", "Japanese"), "pt": ("por", "Portuguese"),
    "tr": ("tur", "Turkish"), "pl": ("pol", "Polish"), "ca": ("cat", "Catalan"),
    "nl": ("nld", "Dutch"), "ar": ("ara", "Arabic"), "sv": ("swe", "Swedish"),
    "it": ("ita", "Italian"), "id": ("ind", "Indonesian"), "hi": ("hin", "Hindi"),
    "fi": ("fin", "Finnish"), "vi": ("vie", "Vietnamese"), "he": ("heb", "Hebrew"),
    "uk": ("ukr", "Ukrainian"), "el": ("ell", "Greek"), "ms": ("msa", "Malay"),
    "cs": ("ces", "Czech"), "ro": ("ron", "Romanian"), "da": ("dan", "Danish"),
    "hu": ("hun", "Hungarian"), "ta": ("tam", "Tamil"), "no": ("nor", "Norwegian"),
    "th": ("tha", "Thai"), "ur": ("urd", "Urdu"), "hr": ("hrv", "Croatian"),
    "bg": ("bul", "Bulgarian"), "lt": ("lit", "Lithuanian"), "la": ("lat", "Latin"),
    "mi": ("mri", "Maori"), "ml": ("mal", "Malayalam"), "cy": ("cym", "Welsh"),
    "sk": ("slk", "Slovak"), "te": ("tel", "Telugu"), "fa": ("fas", "Persian"),
    "lv": ("lav", "Latvian"), "bn": ("ben", "Bengali"), "sr": ("srp", "Serbian"),
    "az": ("aze", "Azerbaijani"), "sl": ("slv", "Slovenian"), "kn": ("kan", "Kannada"),
    "et": ("est", "Estonian"), "mk": ("mkd", "Macedonian"), "br": ("bre", "Breton"),
    "eu": ("eus", "Basque"), "is": ("isl", "Icelandic"), "hy": ("hye", "Armenian"),
    "ne": ("nep", "Nepali"), "mn": ("mon", "Mongolian"), "bs": ("bos", "Bosnian"),
    "kk": ("kaz", "Kazakh"), "sq": ("sqi", "Albanian"), "sw": ("swa", "Swahili"),
    "gl": ("glg", "Galician"), "mr": ("mar", "Marathi"), "pa": ("pan", "Punjabi"),
    "si": ("sin", "Sinhala"), "km": ("khm", "Khmer"), "sn": ("sna", "Shona"),
    "yo": ("yor", "Yoruba"), "so": ("som", "Somali"), "af": ("afr", "Afrikaans"),
    "oc": ("oci", "Occitan"), "ka": ("kat", "Georgian"), "be": ("bel", "Belarusian"),
    "tg": ("tgk", "Tajik"), "sd": ("snd", "Sindhi"), "gu": ("guj", "Gujarati"),
    "am": ("amh", "Amharic"), "yi": ("yid", "Yiddish"), "lo": ("lao", "Lao"),
    "uz": ("uzb", "Uzbek"), "fo": ("fao", "Faroese"), "ht": ("hat", "Haitian Creole"),
    "ps": ("pus", "Pashto"), "tk": ("tuk", "Turkmen"), "nn": ("nno", "Norwegian Nynorsk"),
    "mt": ("mlt", "Maltese"), "sa": ("san", "Sanskrit"), "lb": ("ltz", "Luxembourgish"),
    "my": ("mya", "Burmese"), "bo": ("bod", "Tibetan"), "tl": ("tgl", "Tagalog"),
    "mg": ("mlg", "Malagasy"), "as": ("asm", "Assamese"), "tt": ("tat", "Tatar"),
    "haw": ("haw", "Hawaiian"), "ln": ("lin", "Lingala"), "ha": ("hau", "Hausa"),
    "ba": ("bak", "Bashkir"), "jw": ("jav", "Javanese"), "su": ("sun", "Sundanese"),
    "yue": ("yue", "Cantonese"),
}  # fmt: skip
"""Whisper's 100 language codes (faster-whisper's list, in its order) to (ISO 639-3, English
name). ``zh`` reports ``cmn`` (Mandarin) and ``yue`` Cantonese, as Scribe tells them apart."""

_ALIASES = {
    # ISO 639-2/B (bibliographic) codes, which clients also send
    "alb": "sq", "arm": "hy", "baq": "eu", "bur": "my", "chi": "zh", "cze": "cs", "dut": "nl",
    "fre": "fr", "geo": "ka", "ger": "de", "gre": "el", "ice": "is", "mac": "mk", "mao": "mi",
    "may": "ms", "per": "fa", "rum": "ro", "slo": "sk", "tib": "bo", "wel": "cy",
    # individual languages and old or alternative codes of the same language
    "zho": "zh", "nb": "no", "nob": "no", "jv": "jw", "fil": "tl", "iw": "he", "in": "id",
    "ji": "yi", "mo": "ro", "zsm": "ms", "pes": "fa", "arb": "ar", "ekk": "et", "lvs": "lv",
}  # fmt: skip
_BY_ISO3 = {iso3: code for code, (iso3, _) in WHISPER_LANGUAGES.items()}
_BY_NAME = {name.lower(): code for code, (_, name) in WHISPER_LANGUAGES.items()}
_COMMON = ("en", "fr", "de", "es", "it", "pt", "nl", "pl", "ru", "uk", "zh", "ja", "ko", "ar", "hi", "tr")
"""The order languages are named in an error (the most asked for first), before the rest."""
SHOWN = 12
"""A language set larger than this is named by its first ``SHOWN`` codes and its size."""


class UnknownLanguage(ValueError):
    """A ``language_code`` that is no language Whisper knows, in any spelling we accept."""


def normalize_language(code: str) -> str:
    """Whisper's code for what a client sent (``fr``, ``fra``, ``fre``, ``fr-FR``, ``French``)."""
    text = code.strip().lower().replace("_", "-")
    primary = text.split("-")[0]
    for candidate in (text, primary):
        found = (
            candidate
            if candidate in WHISPER_LANGUAGES
            else _BY_ISO3.get(candidate) or _ALIASES.get(candidate) or _BY_NAME.get(candidate)
        )
        if found:
            return found
    raise UnknownLanguage(
        f"language_code {code!r} is not a language code we know: send ISO 639-1 ('fr'), "
        "ISO 639-3 ('fra') or BCP-47 ('fr-FR')"
    )


def report_code(code: str | None) -> str:
    """The ISO 639-3 code a response carries (upstream's format: ``eng``, ``fra``); None (not
    known: an engine that hears only English) is English."""
    return WHISPER_LANGUAGES[code][0] if code in WHISPER_LANGUAGES else (code or "eng")


def language_name(code: str) -> str:
    return WHISPER_LANGUAGES[code][1] if code in WHISPER_LANGUAGES else code


def _ordered(codes: Iterable[str]) -> list[str]:
    rest = set(codes)
    head = [c for c in _COMMON if c in rest]
    return head + sorted(rest - set(head))


def available_languages(engines: Mapping[str, STTEngine]) -> str:
    """What the loaded engines hear, short enough to read in an error: "en (moonshine, whisper);
    en, fr, de, … (100 languages: whisper_base)"."""
    groups: dict[frozenset[str], list[str]] = {}
    for name, engine in engines.items():
        groups.setdefault(frozenset(engine.languages), []).append(name)
    parts = []
    for codes, names in sorted(groups.items(), key=lambda item: len(item[0])):
        listed = _ordered(codes)
        if len(listed) > SHOWN:
            parts.append(f"{', '.join(listed[:SHOWN])}, … ({len(listed)} languages: {', '.join(names)})")
        else:
            parts.append(f"{', '.join(listed)} ({', '.join(names)})")
    return "; ".join(parts) or "none (no speech-to-text engine is loaded)"


NoEngineReason = Literal["no_engine", "unknown_model", "unknown_language", "unsupported_language"]


class NoEngine(Exception):
    """No engine for this request; each route turns it into its protocol's error shape."""

    def __init__(self, reason: NoEngineReason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """The engine a session or upload starts on, and the language its decoder gets.

    ``language`` is None while it is still to be detected (``detector`` set) or unknowable;
    ``given`` says the client named it (then it is never detected)."""

    name: str
    engine: STTEngine
    language: str | None
    explicit: bool
    given: bool = False
    detector: LanguageDetector | None = None


class STTRouter:
    """Which engine hears a request (see the module docstring). ``prefer`` names engines tried
    before the configured order (batch prefers Whisper tiny.en for English: word times)."""

    def __init__(
        self, engines: Mapping[str, STTEngine], cloud_models: Collection[str], prefer: Sequence[str] = ()
    ) -> None:
        self.engines = engines
        self.cloud_models = cloud_models
        self.order = [*(n for n in prefer if n in engines), *(n for n in engines if n not in prefer)]

    def detector(self) -> LanguageDetector | None:
        """The engine that identifies languages: the first multilingual one that can."""
        for engine in self.engines.values():
            if len(engine.languages) > 1 and isinstance(engine, LanguageDetector):
                return engine
        return None

    def choose(self, model_id: str, language_code: str | None) -> EngineChoice:
        engines = self.engines
        if not engines:
            raise NoEngine("no_engine", "This server has no speech-to-text engine loaded.")
        try:
            language = normalize_language(language_code) if language_code else None
        except UnknownLanguage as exc:
            raise NoEngine("unknown_language", f"{exc}. Available: {available_languages(engines)}.") from None
        name = model_id.removeprefix("speechwire_")
        if model_id.startswith("speechwire_") and name in engines:
            return self._explicit(name, language)
        if model_id not in self.cloud_models:
            known = [*self.cloud_models, *(f"speechwire_{n}" for n in engines)]
            raise NoEngine("unknown_model", f"Unknown model_id {model_id!r}. Available: {', '.join(known)}.")
        if language is not None:
            name = self._hearing(language)
            return EngineChoice(name, engines[name], language, explicit=False, given=True)
        default = self.order[0]
        heard = engines[default].languages
        detector = self.detector()
        start = "en" if "en" in heard else (next(iter(heard)) if len(heard) == 1 else None)
        return EngineChoice(default, engines[default], start, explicit=False, detector=detector)

    def _explicit(self, name: str, language: str | None) -> EngineChoice:
        engine = self.engines[name]
        if language is not None and language not in engine.languages:
            others = [n for n in self.order if language in self.engines[n].languages]
            hint = (
                f"use a scribe model id (it routes {language!r} to {others[0]}) or speechwire_{others[0]}"
                if others
                else f"no engine loaded here hears it. Available: {available_languages(self.engines)}"
            )
            heard = ", ".join(_ordered(engine.languages)[:SHOWN])
            raise NoEngine(
                "unsupported_language",
                f"Language {language!r} ({language_name(language)}) is not heard by speechwire_{name}, "
                f"which hears {heard}: {hint}.",
            )
        if language is not None:
            return EngineChoice(name, engine, language, explicit=True, given=True)
        if len(engine.languages) == 1:
            return EngineChoice(name, engine, next(iter(engine.languages)), explicit=True)
        detector = engine if isinstance(engine, LanguageDetector) else None
        return EngineChoice(name, engine, None, explicit=True, detector=detector)

    def _hearing(self, language: str) -> str:
        for name in self.order:
            if language in self.engines[name].languages:
                return name
        raise NoEngine(
            "unsupported_language",
            f"Language {language!r} ({language_name(language)}) is not heard by any engine loaded "
            f"here. Available: {available_languages(self.engines)}. Add whisper_base to "
            "SPEECHWIRE_STT_ENGINES for 100 languages.",
        )

    def settle(self, choice: EngineChoice, detected: str) -> EngineChoice:
        """The choice once the language is detected: an explicit engine stays; otherwise the first
        engine that hears it (English back on the fast default). The language is then fixed."""
        if choice.explicit:
            return replace(choice, language=detected, detector=None)
        name = self._hearing(detected)
        return replace(choice, name=name, engine=self.engines[name], language=detected, detector=None)


class DetectionSchedule:
    """When a session's one language detection starts (sans I/O: the recogniser asks).

    Once ``after_s`` of audio from the first speech onset has arrived, or at the first commit if
    that comes sooner (then on what there is, once that commit is sent). Once per session: a
    change of language inside a session is rare, and Scribe reports one language per commit, so a
    fixed language costs one detection and never flips a speaker's transcript between languages."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.started = False

    def due(self, speech_s: float, committing: bool = False) -> bool:
        if self.started or speech_s <= 0 or (speech_s < self.after_s and not committing):
            return False
        self.started = True
        return True

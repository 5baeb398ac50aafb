"""espeak-ng through ctypes, from the library and data bundled in ``espeakng-loader``.

Robotic but instant (well under a millisecond a word): the engine for tests that need speed, for
hosts without the cores for Piper, and the only local voice of most languages: one voice per
language of espeak-ng's bundled data that has an ISO 639-1 code (plus Cantonese), so a
``language_code`` other than English still gets speech in that language. espeak reports where
every word starts in the text and in the audio, so character timing comes from the engine itself.
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import c_char_p, c_int, c_short, c_size_t, c_uint, c_void_p
from typing import Any

import numpy as np
import numpy.typing as npt

from speechwire.engines.base import Lazy, Synthesis, SynthesisOptions, VoiceInfo
from speechwire.engines.pool import on_preempt
from speechwire.engines.timing import align_spans

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1
_DEFAULT_WPM = 175

_LANGUAGES: tuple[tuple[str, str, str, str, str], ...] = (
    # (voice id suffix, espeak-ng voice, language, variant, BCP-47 tag), by language code. Every
    # voice named here is in espeakng-loader's data with its dictionary (a test checks each one).
    # Left out: Faroese (its dictionary is not bundled) and Chuvash (it reads no numbers).
    ("af", "af", "Afrikaans", "", "af"),
    ("am", "am", "Amharic", "", "am"),
    ("an", "an", "Aragonese", "", "an"),
    ("ar", "ar", "Arabic", "", "ar"),
    ("as", "as", "Assamese", "", "as"),
    ("az", "az", "Azerbaijani", "", "az"),
    ("ba", "ba", "Bashkir", "", "ba"),
    ("be", "be", "Belarusian", "", "be"),
    ("bg", "bg", "Bulgarian", "", "bg"),
    ("bn", "bn", "Bengali", "", "bn"),
    ("bs", "bs", "Bosnian", "", "bs"),
    ("ca", "ca", "Catalan", "", "ca"),
    ("cs", "cs", "Czech", "", "cs"),
    ("cy", "cy", "Welsh", "", "cy"),
    ("da", "da", "Danish", "", "da"),
    ("de", "de", "German", "", "de"),
    ("el", "el", "Greek", "", "el"),
    ("eo", "eo", "Esperanto", "", "eo"),
    ("es", "es", "Spanish", "Spain", "es-ES"),
    ("es-419", "es-419", "Spanish", "Latin America", "es-419"),
    ("et", "et", "Estonian", "", "et"),
    ("eu", "eu", "Basque", "", "eu"),
    ("fa", "fa", "Persian", "", "fa"),
    ("fi", "fi", "Finnish", "", "fi"),
    ("fr", "fr", "French", "France", "fr-FR"),
    ("ga", "ga", "Irish", "", "ga"),
    ("gd", "gd", "Scottish Gaelic", "", "gd"),
    ("gn", "gn", "Guarani", "", "gn"),
    ("gu", "gu", "Gujarati", "", "gu"),
    ("he", "he", "Hebrew", "", "he"),
    ("hi", "hi", "Hindi", "", "hi"),
    ("hr", "hr", "Croatian", "", "hr"),
    ("ht", "ht", "Haitian Creole", "", "ht"),
    ("hu", "hu", "Hungarian", "", "hu"),
    ("hy", "hy", "Armenian", "", "hy"),
    ("ia", "ia", "Interlingua", "", "ia"),
    ("id", "id", "Indonesian", "", "id"),
    ("io", "io", "Ido", "", "io"),
    ("is", "is", "Icelandic", "", "is"),
    ("it", "it", "Italian", "", "it"),
    ("ja", "ja", "Japanese", "", "ja"),
    ("ka", "ka", "Georgian", "", "ka"),
    ("kk", "kk", "Kazakh", "", "kk"),
    ("kl", "kl", "Greenlandic", "", "kl"),
    ("kn", "kn", "Kannada", "", "kn"),
    ("ko", "ko", "Korean", "", "ko"),
    ("ku", "ku", "Kurdish", "", "ku"),
    ("ky", "ky", "Kyrgyz", "", "ky"),
    ("la", "la", "Latin", "", "la"),
    ("lb", "lb", "Luxembourgish", "", "lb"),
    ("lt", "lt", "Lithuanian", "", "lt"),
    ("lv", "lv", "Latvian", "", "lv"),
    ("mi", "mi", "Māori", "", "mi"),
    ("mk", "mk", "Macedonian", "", "mk"),
    ("ml", "ml", "Malayalam", "", "ml"),
    ("mr", "mr", "Marathi", "", "mr"),
    ("ms", "ms", "Malay", "", "ms"),
    ("mt", "mt", "Maltese", "", "mt"),
    ("my", "my", "Burmese", "", "my"),
    ("ne", "ne", "Nepali", "", "ne"),
    ("nl", "nl", "Dutch", "", "nl"),
    ("no", "nb", "Norwegian", "Bokmål", "no"),
    ("om", "om", "Oromo", "", "om"),
    ("or", "or", "Odia", "", "or"),
    ("pa", "pa", "Punjabi", "", "pa"),
    ("pl", "pl", "Polish", "", "pl"),
    ("pt", "pt", "Portuguese", "Portugal", "pt-PT"),
    ("pt-br", "pt-BR", "Portuguese", "Brazil", "pt-BR"),
    ("qu", "qu", "Quechua", "", "qu"),
    ("ro", "ro", "Romanian", "", "ro"),
    ("ru", "ru", "Russian", "", "ru"),
    ("sd", "sd", "Sindhi", "", "sd"),
    ("si", "si", "Sinhala", "", "si"),
    ("sk", "sk", "Slovak", "", "sk"),
    ("sl", "sl", "Slovenian", "", "sl"),
    ("sq", "sq", "Albanian", "", "sq"),
    ("sr", "sr", "Serbian", "", "sr"),
    ("sv", "sv", "Swedish", "", "sv"),
    ("sw", "sw", "Swahili", "", "sw"),
    ("ta", "ta", "Tamil", "", "ta"),
    ("te", "te", "Telugu", "", "te"),
    ("th", "th", "Thai", "", "th"),
    ("ti", "ti", "Tigrinya", "", "ti"),
    ("tk", "tk", "Turkmen", "", "tk"),
    ("tn", "tn", "Tswana", "", "tn"),
    ("tr", "tr", "Turkish", "", "tr"),
    ("tt", "tt", "Tatar", "", "tt"),
    ("ug", "ug", "Uyghur", "", "ug"),
    ("uk", "uk", "Ukrainian", "", "uk"),
    ("ur", "ur", "Urdu", "", "ur"),
    ("uz", "uz", "Uzbek", "", "uz"),
    ("vi", "vi", "Vietnamese", "", "vi"),
    ("yue", "yue", "Cantonese", "", "yue"),
    ("zh", "cmn", "Chinese", "Mandarin", "zh"),
)

_VOICES: dict[str, tuple[str, str, str, str, str]] = {
    # voice id -> (espeak-ng voice, display name, BCP-47 tag, language name, accent label).
    # English first: with espeak alone, the registry's default is the first voice.
    "espeak-en": ("en-us", "espeak-ng English (US)", "en-US", "English", "american"),
    "espeak-en-gb": ("en", "espeak-ng English (UK)", "en-GB", "English", "british"),
    **{
        f"espeak-{suffix}": (
            espeak_voice,
            f"espeak-ng {language} ({variant})" if variant else f"espeak-ng {language}",
            tag,
            language,
            variant.lower() if variant else "standard",
        )
        for suffix, espeak_voice, language, variant, tag in _LANGUAGES
    },
}


class _EventId(ctypes.Union):
    _fields_ = [("number", c_int), ("name", c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", c_int),
        ("unique_identifier", c_uint),
        ("text_position", c_int),
        ("length", c_int),
        ("audio_position", c_int),
        ("sample", c_int),
        ("user_data", c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(c_int, ctypes.POINTER(c_short), c_int, ctypes.POINTER(_Event))

_LOCK = threading.Lock()
"""libespeak-ng is a process-wide singleton and not thread-safe: every call goes through this."""


class _Library:
    """libespeak-ng, initialised once per process, with the one synth callback it can hold.

    Why module-level: the library keeps a single global callback pointer. Were it owned by an
    engine object, a second engine (a second app in the same process) would replace the pointer
    and the first one's garbage collection would leave the library calling freed memory.
    """

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path(), mode=os.RTLD_LOCAL)
        lib.espeak_Initialize.restype = c_int
        lib.espeak_Initialize.argtypes = [c_int, c_int, c_char_p, c_int]
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self.rate = int(rate)
        self.samples: list[npt.NDArray[np.int16]] = []
        self.words: list[tuple[int, int, int]] = []  # (text position, length, sample offset)
        self.stop = False
        """Set from another thread to end the running ``espeak_Synth`` (the callback returns 1)."""
        self.voice: str | None = None
        """The espeak voice loaded now: the library holds one, for every caller, so it is set
        under ``_LOCK`` together with the synthesis that needs it (loading one takes up to 20 ms,
        Russian's dictionary, so an unchanged voice is not loaded again)."""
        self.callback = _CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self.callback)
        lib.espeak_SetVoiceByName.argtypes = [c_char_p]
        lib.espeak_SetVoiceByName.restype = c_int
        lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
        # espeak_Synth(text, size, position, position_type, end_position, flags, unique_id, user_data)
        lib.espeak_Synth.argtypes = [c_void_p, c_size_t, c_uint, c_int, c_uint, c_uint, c_void_p, c_void_p]
        self.lib = lib

    def _on_audio(self, wav: Any, count: int, events: Any) -> int:
        if count > 0 and wav:
            self.samples.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16, copy=True))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                self.words.append((event.text_position, event.length, event.sample))
            i += 1
        return 1 if self.stop else 0


_LIBRARY = Lazy(_Library)
"""The process's espeak-ng."""


class EspeakEngine:
    """espeak-ng voices; calls are serialised (one synthesis at a time in the process)."""

    name = "espeak"

    def __init__(self) -> None:
        self._rate = 22050

    def voices(self) -> list[VoiceInfo]:
        """Every voice, labelled robotic: a client choosing by labels can tell them from natural ones."""
        return [
            VoiceInfo(
                vid,
                name,
                self.name,
                tag,
                self._rate,
                f"espeak-ng formant synthesis of {language}: robotic (not a natural voice), instant.",
                {"engine": "espeak", "quality": "robotic", "gender": "male", "accent": accent},
                language,
            )
            for vid, (_, name, tag, language, accent) in _VOICES.items()
        ]

    def load(self) -> None:
        self._rate = _LIBRARY.get().rate

    def synthesize(self, text: str, voice_id: str, options: SynthesisOptions) -> Synthesis:
        if voice_id not in _VOICES:
            raise KeyError(voice_id)
        self.load()
        data = text.encode("utf-8")
        with _LOCK:
            library = _LIBRARY.get()
            library.samples, library.words, library.stop = [], [], False
            on_preempt(lambda: setattr(library, "stop", True))
            _select(library, _VOICES[voice_id][0])
            library.lib.espeak_SetParameter(_PARAM_RATE, round(_DEFAULT_WPM * options.speed), 0)
            buf = ctypes.create_string_buffer(data)
            library.lib.espeak_Synth(buf, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            samples, words, stopped = library.samples, library.words, library.stop
            library.samples, library.words = [], []
        if stopped:
            raise RuntimeError("espeak-ng synthesis stopped for a more urgent job")
        pcm = np.concatenate(samples) if samples else np.zeros(0, np.int16)
        total_ms = 1000 * len(pcm) / self._rate
        spans = []
        for k, (position, length, sample) in enumerate(words):
            start_ms = 1000 * sample / self._rate
            end_ms = 1000 * words[k + 1][2] / self._rate if k + 1 < len(words) else total_ms
            lo = position - 1  # espeak counts characters from 1
            spans.append((lo, lo + length, start_ms, end_ms))
        return Synthesis(pcm, self._rate, align_spans(text, spans, total_ms), "engine")


def _select(library: _Library, voice: str) -> None:
    """Load ``voice`` into the library unless it holds it already; the caller holds ``_LOCK``.

    A failed load leaves the previous voice in place, which would speak the text in the wrong
    language: it raises instead."""
    if library.voice == voice:
        return
    library.voice = None
    if library.lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"espeak-ng has no voice {voice!r}")
    library.voice = voice

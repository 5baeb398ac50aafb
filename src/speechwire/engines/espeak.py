"""espeak-ng through ctypes, from the library and data bundled in ``espeakng-loader``.

Robotic but instant (well under a millisecond a word): the engine for tests that need speed and
for hosts without the cores for Piper. espeak reports where every word starts in the text and in
the audio, so character timing comes from the engine itself.
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

_VOICES = {
    "espeak-en": ("en-us", "espeak-ng English (US)", "en-US"),
    "espeak-en-gb": ("en", "espeak-ng English (UK)", "en-GB"),
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
        self.callback = _CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self.callback)
        lib.espeak_SetVoiceByName.argtypes = [c_char_p]
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
        about = "espeak-ng formant synthesis: robotic, instant."
        return [
            VoiceInfo(vid, name, self.name, lang, self._rate, about, {"engine": "espeak"})
            for vid, (_, name, lang) in _VOICES.items()
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
            library.lib.espeak_SetVoiceByName(_VOICES[voice_id][0].encode())
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

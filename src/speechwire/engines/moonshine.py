"""Moonshine tiny (English) from the ``moonshine-voice`` package's bundled model.

Pinned to 0.1.0: later versions download models at run time, which no machine here can do.
Decoding costs about 50 ms per second of audio (no 30 s padding as in Whisper), which is what
makes short commits fast.
"""

from __future__ import annotations

import ctypes
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from speechwire.engines.base import Lazy, Recognition, join_texts


def default_model_path() -> Path:
    import moonshine_voice

    return Path(moonshine_voice.__file__).parent / "assets" / "tiny-en"


class MoonshineEngine:
    """``instances`` Moonshine transcribers; each call borrows one.

    A transcriber's C handle is not documented as thread-safe, so one handle serves one call at a
    time; a decode runs on one core, so one instance per core lets the engine use the machine.
    """

    name = "moonshine"
    languages = frozenset({"en"})

    def __init__(self, model_path: str | Path | None = None, instances: int = 1) -> None:
        self._free = Lazy(lambda: _open(str(model_path or default_model_path()), instances))

    def load(self) -> None:
        self._free.get()

    def recognize(
        self, pcm16k: npt.NDArray[np.int16], language: str | None = None, word_timestamps: bool = False
    ) -> Recognition:
        free = self._free.get()
        audio = np.ascontiguousarray(pcm16k.astype(np.float32) / 32768.0)
        start = time.perf_counter()
        t = free.get()
        try:
            from moonshine_voice.errors import check_error
            from moonshine_voice.moonshine_api import TranscriptC

            out = ctypes.POINTER(TranscriptC)()
            error = t._lib.moonshine_transcribe_without_streaming(
                t._handle,
                audio.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                len(audio),
                16000,
                0,
                ctypes.byref(out),
            )
            check_error(error)
            transcript = t._parse_transcript(out)
        finally:
            free.put(t)
        text = join_texts(line.text for line in real_lines(transcript.lines))
        return Recognition(text, (), 1000 * (time.perf_counter() - start))


def _open(model_path: str, instances: int) -> queue.Queue[Any]:
    """``instances`` transcribers, each lent to one call at a time."""
    from moonshine_voice import ModelArch
    from moonshine_voice.transcriber import Transcriber

    free: queue.Queue[Any] = queue.Queue()
    for _ in range(instances):
        free.put(Transcriber(model_path, ModelArch.TINY))
    return free


FRAGMENT_S = 0.2
"""Lines this short beside a longer one are Moonshine's own segmenter misfiring on an onset."""


def real_lines(lines: list[Any]) -> list[Any]:
    """The transcript's lines without the fragments Moonshine adds before a phrase.

    Why: ``transcribe_without_streaming`` segments the audio itself and often returns, beside
    the phrase, a 0.06–0.16 s line decoded from its first breath: "You", "?", "2", "What". Joined,
    they were the junk first words of transcripts ("You The invention…", "What What your
    country…", issue 15). A short line alone is kept: it may be a real "Yes."."""
    if len(lines) < 2:
        return lines
    kept = [line for line in lines if float(getattr(line, "duration", 1.0)) >= FRAGMENT_S]
    return kept or lines

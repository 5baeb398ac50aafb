"""Moonshine tiny (English) from the ``moonshine-voice`` package's bundled model.

Pinned to 0.1.0: later versions download models at run time, which no machine here can do.
Decoding costs about 50 ms per second of audio (no 30 s padding as in Whisper), which is what
makes short commits fast.
"""

from __future__ import annotations

import ctypes
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from speechwire.engines.base import Recognition


def default_model_path() -> Path:
    import moonshine_voice

    return Path(moonshine_voice.__file__).parent / "assets" / "tiny-en"


class MoonshineEngine:
    """One Moonshine transcriber; calls are serialised (its C handle is not documented as
    thread-safe)."""

    name = "moonshine"

    def __init__(self, model_path: str | Path | None = None) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self._transcriber: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._transcriber is None:
                from moonshine_voice import ModelArch
                from moonshine_voice.transcriber import Transcriber

                self._transcriber = Transcriber(str(self.model_path or default_model_path()), ModelArch.TINY)

    def recognize(
        self, pcm16k: npt.NDArray[np.int16], language: str | None = None, word_timestamps: bool = False
    ) -> Recognition:
        self.load()
        audio = np.ascontiguousarray(pcm16k.astype(np.float32) / 32768.0)
        start = time.perf_counter()
        with self._lock:
            t = self._transcriber
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
        text = " ".join(line.text.strip() for line in transcript.lines if line.text.strip())
        return Recognition(text, (), 1000 * (time.perf_counter() - start))

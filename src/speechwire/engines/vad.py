"""Silero VAD (v6), from the ONNX file that ships inside faster-whisper, one state per stream.

0.1 ms a 32 ms frame on one thread: cheap enough to run inline for every chunk a client sends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from speechwire.engines.base import Lazy, onnx_session

FRAME = 512
"""Samples per VAD frame at 16 kHz (32 ms), as Silero expects."""
_CONTEXT = 64


def _open_session() -> Any:
    """One ONNX session for every stream (state is passed in and out), one thread, fatal logs only."""
    import faster_whisper

    return onnx_session(str(Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"), 1, 4)


_SESSION = Lazy(_open_session)


class SileroVAD:
    """Speech probability of each 32 ms frame of a 16 kHz stream; keeps leftover samples."""

    def __init__(self) -> None:
        self._session = _SESSION.get()
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)

    def probabilities(self, pcm16k: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
        """Probabilities for every complete frame now available (leftovers wait for more audio)."""
        audio = np.concatenate([self._pending, pcm16k.astype(np.float32) / 32768.0])
        n = len(audio) // FRAME
        self._pending = audio[n * FRAME :]
        out = np.zeros(n, np.float32)
        for i in range(n):
            frame = audio[i * FRAME : (i + 1) * FRAME]
            x = np.concatenate([self._context, frame])[None, :]
            prob, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
            self._context = frame[-_CONTEXT:]
            out[i] = float(np.asarray(prob).reshape(-1)[0])
        return out

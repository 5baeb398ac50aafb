"""Sample-rate conversion with soxr: streaming (state kept across chunks) and one-shot."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr


def _to_int16(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


class StreamResampler:
    """Resamples a stream chunk by chunk with no discontinuity at chunk boundaries."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
        )

    def process(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        if self._stream is None:
            return np.asarray(pcm, dtype=np.int16)
        out = self._stream.resample_chunk(np.asarray(pcm, dtype=np.float32), last=False)
        return _to_int16(out)

    def flush(self) -> npt.NDArray[np.int16]:
        if self._stream is None:
            return np.zeros(0, np.int16)
        return _to_int16(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))


def resample(pcm: npt.NDArray[np.int16], in_rate: int, out_rate: int) -> npt.NDArray[np.int16]:
    """One-shot resampling of a whole signal."""
    if in_rate == out_rate:
        return np.asarray(pcm, dtype=np.int16)
    return _to_int16(soxr.resample(np.asarray(pcm, dtype=np.float32), in_rate, out_rate, quality="HQ"))

"""Latency figures a client can see for itself: time to first audio, chunk gaps, percentiles."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    return float(np.percentile(values, q)) if len(values) else math.nan


@dataclass
class LatencyRecorder:
    """Timestamps of one stream on the client's monotonic clock."""

    first_text_at: float | None = None
    first_audio_at: float | None = None
    chunk_times: list[float] = field(default_factory=list)

    def text_sent(self) -> None:
        if self.first_text_at is None:
            self.first_text_at = time.perf_counter()

    def audio_received(self) -> None:
        now = time.perf_counter()
        if self.first_audio_at is None:
            self.first_audio_at = now
        self.chunk_times.append(now)

    @property
    def time_to_first_audio(self) -> float | None:
        """Seconds from the first text sent to the first audio received."""
        if self.first_text_at is None or self.first_audio_at is None:
            return None
        return self.first_audio_at - self.first_text_at

    @property
    def chunk_gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:], strict=False)]

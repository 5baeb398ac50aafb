"""``PlaybackBuffer``: the listener's jitter buffer, for Python consumers of streamed audio.

The same rule as the browser player (``web/player-worklet.js``), so a Python consumer and the
page hear the same thing: audio is written as it arrives and read at the device's pace. Playback
starts once ``target_s`` is queued (the start-up cushion: a deeper one survives more network
jitter but delays the first sound), or at once when the producer has ended. Running dry before
the end is an *underrun*: playback pauses until ``min_s`` is queued again (a small re-buffer keeps
the stall short). Writing past ``max_s`` is an *overrun*: the excess is dropped and counted, so a
consumer that stops reading holds bounded memory instead of growing without limit.

Sans-I/O: nothing here knows of clocks or devices. A speaker callback calls ``read(frames)``; a
simulated listener (``bench load``) calls ``elapse(seconds)`` for the time that passed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]


class PlaybackBuffer:
    """Mono int16 samples at ``sample_rate``, with start-up cushion, re-buffer depth and capacity."""

    def __init__(
        self, sample_rate: int, *, target_s: float = 0.12, min_s: float | None = None, max_s: float = 120.0
    ) -> None:
        if sample_rate <= 0 or target_s < 0 or max_s <= 0:
            raise ValueError("sample_rate and max_s must be positive, target_s not negative")
        self.sample_rate = sample_rate
        self.target = round(target_s * sample_rate)
        self.min = self.target if min_s is None else round(min_s * sample_rate)
        self.capacity = max(1, round(max_s * sample_rate), self.target, self.min)
        self._ring = np.zeros(self.capacity, np.int16)
        self._written = 0  # samples ever written (stream position of the write end)
        self._read = 0  # samples ever read
        self.playing = False
        self.ended = False
        self.underruns = 0
        self.overruns = 0
        self.dropped = 0  # samples lost to overruns
        self.starts = 0
        self.stall = 0  # samples of silence read since the current underrun
        self.longest_stall = 0  # the longest such silence, in samples

    @property
    def queued(self) -> int:
        return self._written - self._read

    def write(self, samples: Int16Array) -> int:
        """Queue ``samples``; return how many fit (the rest is an overrun)."""
        n = len(samples)
        room = self.capacity - self.queued
        if n > room:
            self.overruns += 1
            self.dropped += n - room
            n = room
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self._ring[start : start + first] = samples[:first]
        self._ring[: n - first] = samples[first:n]
        self._written += n
        self.ended = False
        return n

    def end(self) -> None:
        """No more audio is coming for now: play out what is queued, cushion or not."""
        self.ended = True

    def read(self, frames: int) -> Int16Array:
        """The next ``frames`` samples to play; silence where nothing may be played yet."""
        out = np.zeros(frames, np.int16)
        if not self.playing:
            depth = self.target if self.starts == 0 else self.min
            if self.queued > 0 and (self.queued >= depth or self.ended):
                self.playing = True
                self.starts += 1
                self.stall = 0
        n = min(frames, self.queued) if self.playing else 0
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._ring[start : start + first]
        out[first:n] = self._ring[: n - first]
        self._read += n
        if self.playing and n < frames:
            self.playing = False
            if not self.ended:  # ran dry mid-stream; at the end it is just the end
                self.underruns += 1
        if not self.playing and not self.ended and self.starts > 0:
            self.stall += frames - n
            self.longest_stall = max(self.longest_stall, self.stall)
        return out

    def elapse(self, seconds: float, block: int = 128) -> None:
        """Play ``seconds`` of real time in blocks of ``block`` frames (a simulated device)."""
        frames = round(seconds * self.sample_rate)
        while frames > 0:
            step = min(block, frames)
            self.read(step)
            frames -= step

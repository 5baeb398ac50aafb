"""Decode a container stream as it grows: WebM/Opus from a browser's ``MediaRecorder``.

Why a thread: FFmpeg's demuxer (through PyAV) pulls bytes with blocking reads, while the bytes
arrive from a socket over time. The thread reads from a small pipe that ``feed`` fills, and hands
each decoded piece (16 kHz mono int16) to ``on_pcm``; ``close`` ends the input, which flushes
the decoder and ends the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from speechwire.audio.codecs import av_pcm

log = logging.getLogger("speechwire.audio")

Int16Array = npt.NDArray[np.int16]
OnPCM = Callable[[Int16Array], object]
OnError = Callable[[Exception], object]


class _Pipe:
    """Bytes written by one thread, read (blocking) by another; ``read`` returns b"" at the end."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._cond = threading.Condition()
        self._closed = False
        self._reader_waiting = False

    def write(self, data: bytes) -> None:
        with self._cond:
            self._buffer += data
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_drained(self, timeout: float) -> bool:
        """Block until the reader has taken everything and waits for more (or the pipe closed)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._closed or (not self._buffer and self._reader_waiting), timeout
            )

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._buffer and not self._closed:
                self._reader_waiting = True
                self._cond.notify_all()
                self._cond.wait()
                self._reader_waiting = False
            n = len(self._buffer) if size < 0 else min(size, len(self._buffer))
            out = bytes(self._buffer[:n])
            del self._buffer[:n]
            return out


class StreamingDecoder:
    """One growing stream in ``container`` format (``"webm"``), decoded to ``rate`` Hz mono int16."""

    def __init__(self, container: str, rate: int, on_pcm: OnPCM, on_error: OnError) -> None:
        self._pipe = _Pipe()
        args = (container, rate, on_pcm, on_error)
        self._thread = threading.Thread(target=self._run, args=args, name="stream-decoder", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        self._pipe.write(data)

    def wait_decoded(self, timeout: float = 2.0) -> bool:
        """Block until everything fed so far has been decoded (``on_pcm`` called for it)."""
        return self._pipe.wait_drained(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """End the input and wait for the last audio to be decoded."""
        self._pipe.close()
        self._thread.join(timeout)

    def _run(self, container: str, rate: int, on_pcm: OnPCM, on_error: OnError) -> None:
        import av

        try:
            # No probing: the format is known, and probing would wait for megabytes to arrive.
            options = {"probesize": "32", "analyzeduration": "0", "fflags": "nobuffer"}
            with av.open(self._pipe, mode="r", format=container, options=options, buffer_size=4096) as stream:
                for pcm, _ in av_pcm(stream, av.AudioResampler(format="s16", layout="mono", rate=rate)):
                    on_pcm(pcm)
        except Exception as exc:
            if self._pipe.closed:
                return  # the input ended mid-structure (a session closed mid-chunk): nothing lost
            log.info("stream decoder (%s) stopped: %s", container, exc)
            on_error(exc)

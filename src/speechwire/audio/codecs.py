"""Streaming encoders for every output format, and decoders for clients and tests.

An encoder takes int16 PCM at the engine's rate, resamples it (state kept across chunks, so no
clicks at boundaries) and returns whatever encoded bytes are ready; ``flush`` ends the stream.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from speechwire.audio.formats import AudioFormat
from speechwire.audio.resample import StreamResampler

Int16Array = npt.NDArray[np.int16]

# ---- G.711 (ITU-T, as in Sun's reference g711.c), vectorised through lookup tables -------------

_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _build_ulaw_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")
    uval = (seg << 4) | ((mag >> (seg + 1)) & 0xF)
    out = np.where(seg >= 8, 0x7F ^ mask, uval ^ mask)
    return out.astype(np.uint8)


def _build_alaw_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_AEND, mag, side="left")
    low = np.where(seg < 2, (mag >> 1) & 0xF, (mag >> np.maximum(seg, 1)) & 0xF)
    out = np.where(seg >= 8, 0x7F ^ mask, ((seg << 4) | low) ^ mask)
    return out.astype(np.uint8)


def _build_ulaw_decode() -> Int16Array:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_decode() -> Int16Array:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0xF) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC = _build_ulaw_table()
_ALAW_ENC = _build_alaw_table()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_DEC = _build_alaw_decode()


def ulaw_encode(pcm: Int16Array) -> bytes:
    return _ULAW_ENC[np.asarray(pcm, np.int16).astype(np.int32) + 32768].tobytes()


def alaw_encode(pcm: Int16Array) -> bytes:
    return _ALAW_ENC[np.asarray(pcm, np.int16).astype(np.int32) + 32768].tobytes()


def ulaw_decode(data: bytes) -> Int16Array:
    return _ULAW_DEC[np.frombuffer(data, np.uint8)]


def alaw_decode(data: bytes) -> Int16Array:
    return _ALAW_DEC[np.frombuffer(data, np.uint8)]


# ---- encoders ----------------------------------------------------------------------------------


class Encoder:
    """A stream encoder (``encode`` chunks, then ``flush`` once), and itself the PCM one:
    little-endian signed 16-bit. Subclasses change only how samples become bytes (``_bytes``)
    and what ends their stream (``_end``); the resampling is the same for every codec."""

    def __init__(self, fmt: AudioFormat, input_rate: int) -> None:
        self.format = fmt
        self._resampler = StreamResampler(input_rate, fmt.sample_rate)

    def encode(self, pcm: Int16Array) -> bytes:
        return self._bytes(self._resampler.process(pcm))

    def flush(self) -> bytes:
        return self._bytes(self._resampler.flush()) + self._end()

    def _bytes(self, samples: Int16Array) -> bytes:
        return samples.astype("<i2", copy=False).tobytes()

    def _end(self) -> bytes:
        return b""


class G711Encoder(Encoder):
    """μ-law or A-law, 8 bits a sample."""

    def _bytes(self, samples: Int16Array) -> bytes:
        return ulaw_encode(samples) if self.format.codec == "ulaw" else alaw_encode(samples)


class MP3Encoder(Encoder):
    """MP3 through LAME (lameenc): constant bit rate, mono, output rate pinned to the format's."""

    def __init__(self, fmt: AudioFormat, input_rate: int) -> None:
        import lameenc

        super().__init__(fmt, input_rate)
        self._lame = lameenc.Encoder()
        self._lame.set_bit_rate(fmt.bitrate_kbps or 128)
        self._lame.set_in_sample_rate(fmt.sample_rate)
        self._lame.set_out_sample_rate(fmt.sample_rate)
        self._lame.set_channels(1)
        self._lame.set_quality(5)  # 2 is best and slowest; 5 is LAME's default speed/quality balance
        self._started = False  # lameenc's flush() raises if nothing was ever encoded

    def _bytes(self, samples: Int16Array) -> bytes:
        if not len(samples):
            return b""
        self._started = True
        return bytes(self._lame.encode(samples.tobytes()))

    def _end(self) -> bytes:
        return bytes(self._lame.flush()) if self._started else b""


class _Sink:
    """A write-only, non-seekable file for PyAV's muxer; ``drain`` hands over what was written."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


class OpusEncoder(Encoder):
    """Ogg Opus through PyAV's libopus; 20 ms Ogg pages so bytes flow chunk by chunk."""

    def __init__(self, fmt: AudioFormat, input_rate: int) -> None:
        import av

        super().__init__(fmt, input_rate)
        self._sink = _Sink()
        self._container = av.open(self._sink, mode="w", format="ogg", options={"page_duration": "20000"})
        self._stream = self._container.add_stream("libopus", rate=fmt.sample_rate, layout="mono")
        self._stream.bit_rate = (fmt.bitrate_kbps or 64) * 1000
        self._pts = 0

    def _bytes(self, samples: Int16Array) -> bytes:
        import av

        if len(samples):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples).reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = self.format.sample_rate
            frame.pts = self._pts
            self._pts += len(samples)
            self._mux(self._stream.encode(frame))
        return self._sink.drain()

    def _end(self) -> bytes:
        self._mux(self._stream.encode(None))
        self._container.close()
        return self._sink.drain()

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self._container.mux(packet)


_ENCODERS = {"pcm": Encoder, "ulaw": G711Encoder, "alaw": G711Encoder, "mp3": MP3Encoder}


def make_encoder(fmt: AudioFormat, input_rate: int) -> Encoder:
    """A fresh streaming encoder from ``input_rate`` PCM to ``fmt``."""
    return _ENCODERS.get(fmt.codec, OpusEncoder)(fmt, input_rate)


# ---- decoding (clients, tests, the CLI) --------------------------------------------------------


def decode_with_av(data: bytes) -> tuple[Int16Array, int]:
    """Any container and codec FFmpeg reads (WAV, MP3, FLAC, Ogg, WebM, MP4…) to mono int16 PCM
    at its own rate. Public because file reading and the batch STT route need the same decoder."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        pieces = list(av_pcm(container, av.AudioResampler(format="s16", layout="mono")))
    rate = pieces[-1][1] if pieces else 0
    return (np.concatenate([pcm for pcm, _ in pieces]) if pieces else np.zeros(0, np.int16)), rate


def av_pcm(container: Any, resampler: Any) -> Iterator[tuple[Int16Array, int]]:
    """Mono int16 pieces (and their rate) of an open PyAV ``container``'s first audio stream through
    ``resampler``, its tail included: the loop every PyAV decode here (whole or streaming) shares."""
    for frame in itertools.chain(container.decode(audio=0), [None]):
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1).astype(np.int16), int(out.sample_rate)


def decode_to_pcm(data: bytes, fmt: AudioFormat) -> tuple[Int16Array, int]:
    """Decode a whole stream in ``fmt`` to mono int16 PCM and its sample rate."""
    if fmt.codec == "pcm":
        return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16), fmt.sample_rate
    if fmt.codec == "ulaw":
        return ulaw_decode(data), fmt.sample_rate
    if fmt.codec == "alaw":
        return alaw_decode(data), fmt.sample_rate
    pcm, rate = decode_with_av(data)
    return pcm, rate or fmt.sample_rate

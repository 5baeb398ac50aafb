"""Codecs and resampling: G.711 reference values, round trips, and clean chunk boundaries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechwire.audio.codecs import (
    alaw_decode,
    alaw_encode,
    decode_to_pcm,
    make_encoder,
    ulaw_decode,
    ulaw_encode,
)
from speechwire.audio.formats import TTS_OUTPUT_FORMATS, AudioFormat, UnsupportedFormat
from speechwire.audio.resample import StreamResampler, resample

RATE = 22050


def tone(freq: float = 440.0, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_g711_reference_values() -> None:
    assert ulaw_encode(np.array([0], np.int16)) == b"\xff"
    assert alaw_encode(np.array([0], np.int16)) == b"\xd5"
    assert ulaw_encode(np.array([32767, -32768], np.int16)) == b"\x80\x00"
    assert alaw_encode(np.array([32767, -32768], np.int16)) == b"\xaa\x2a"
    x = np.arange(-32768, 32768, 7, dtype=np.int16)
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        back = dec(enc(x)).astype(np.int32)
        err = np.abs(back - x.astype(np.int32))
        assert np.all(err <= np.maximum(16, np.abs(x.astype(np.int32)) // 16))


@pytest.mark.parametrize("name", TTS_OUTPUT_FORMATS)
def test_every_format_round_trips_chunked(name: str) -> None:
    fmt = AudioFormat.parse(name)
    src = tone()
    enc = make_encoder(fmt, RATE)
    sizes = [1, 500, 3000, 4410, 77, 10000]
    out, pos = b"", 0
    for size in sizes * 3:
        out += enc.encode(src[pos : pos + size])
        pos += size
        if pos >= len(src):
            break
    out += enc.encode(src[pos:]) + enc.flush()
    pcm, rate = decode_to_pcm(out, fmt)
    assert rate == fmt.sample_rate
    assert abs(len(pcm) / rate - 1.0) < 0.08
    spectrum = np.abs(np.fft.rfft(pcm[: rate // 2].astype(np.float64)))
    peak_hz = np.argmax(spectrum) * rate / len(pcm[: rate // 2])
    assert abs(peak_hz - 440) < 10


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(UnsupportedFormat, match="Supported"):
        AudioFormat.parse("wav_44100")


def test_stream_resampling_matches_one_shot() -> None:
    src = tone(seconds=2)
    whole = resample(src, RATE, 16000)
    stream = StreamResampler(RATE, 16000)
    pieces = [stream.process(src[i : i + 1234]) for i in range(0, len(src), 1234)] + [stream.flush()]
    chunked = np.concatenate(pieces)
    n = min(len(whole), len(chunked))
    assert abs(len(whole) - len(chunked)) <= 2
    diff = np.abs(whole[100 : n - 100].astype(np.int32) - chunked[100 : n - 100].astype(np.int32))
    assert diff.max() <= 2  # no clicks at chunk boundaries


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=12))
def test_pcm_encoding_is_independent_of_chunking(cuts: list[int]) -> None:
    src = tone(seconds=0.5)
    fmt = AudioFormat.parse("pcm_16000")
    one = make_encoder(fmt, RATE)
    reference = one.encode(src) + one.flush()
    enc = make_encoder(fmt, RATE)
    out, pos = b"", 0
    for c in cuts:
        out += enc.encode(src[pos : pos + c])
        pos += c
    out += enc.encode(src[pos:]) + enc.flush()
    a = np.frombuffer(reference, np.int16).astype(np.int32)
    b = np.frombuffer(out, np.int16).astype(np.int32)
    assert abs(len(a) - len(b)) <= 1
    n = min(len(a), len(b))
    assert np.abs(a[:n] - b[:n]).max() <= 2


@pytest.mark.parametrize("name", TTS_OUTPUT_FORMATS)
def test_a_stream_with_no_audio_flushes_cleanly(name: str) -> None:
    """A TTS stream can end before any audio (init, then end of input): no encoder may crash."""
    encoder = make_encoder(AudioFormat.parse(name), RATE)
    assert isinstance(encoder.flush(), bytes)

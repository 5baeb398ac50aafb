"""PlaybackBuffer: the browser player's rule (cushion, underrun, overrun) for Python consumers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from speechwire.audio.playback import PlaybackBuffer


def ramp(n: int, start: int = 0) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def test_waits_for_the_cushion_then_plays_in_order() -> None:
    buf = PlaybackBuffer(1000, target_s=0.1)
    buf.write(ramp(50))
    assert not buf.read(20).any() and buf.queued == 50  # below the cushion: silence, nothing consumed
    buf.write(ramp(50, 50))
    assert buf.read(30).tolist() == list(range(30)) and buf.starts == 1


def test_end_plays_out_a_short_tail_without_counting_an_underrun() -> None:
    buf = PlaybackBuffer(1000, target_s=0.1)
    buf.write(ramp(40))
    buf.end()
    out = buf.read(64)
    assert out[:40].tolist() == list(range(40)) and not out[40:].any()
    assert buf.underruns == 0 and buf.queued == 0


def test_running_dry_mid_stream_is_an_underrun_and_rebuffers_to_min() -> None:
    buf = PlaybackBuffer(1000, target_s=0.1, min_s=0.02)
    buf.write(ramp(100))
    buf.read(100)
    buf.read(10)  # dry: counted once, playback pauses
    buf.read(10)
    assert buf.underruns == 1 and not buf.playing and buf.longest_stall == 20
    buf.write(ramp(10))
    assert not buf.read(5).any()  # 10 queued < min 20
    buf.write(ramp(10, 10))
    assert buf.read(5).tolist() == [0, 1, 2, 3, 4] and buf.starts == 2 and buf.underruns == 1


def test_writing_past_capacity_drops_the_excess() -> None:
    buf = PlaybackBuffer(1000, target_s=0.0, max_s=0.1)
    assert buf.write(ramp(80)) == 80
    assert buf.write(ramp(50, 80)) == 20
    assert buf.overruns == 1 and buf.dropped == 30 and buf.queued == 100
    assert buf.read(100).tolist() == list(range(100))


def test_elapse_plays_real_time() -> None:
    buf = PlaybackBuffer(16000, target_s=0.2, min_s=0.0)
    buf.write(np.ones(16000, np.int16))
    buf.elapse(0.25)
    assert buf.queued == 12000 and buf.underruns == 0
    buf.elapse(1.0)
    assert buf.underruns == 1 and buf.longest_stall == 4000


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        PlaybackBuffer(0)


@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("w"), st.integers(0, 300)),
            st.tuples(st.just("r"), st.integers(0, 300)),
            st.tuples(st.just("e"), st.just(0)),
        ),
        max_size=60,
    ),
    target=st.integers(0, 200),
    min_depth=st.integers(0, 200),
    capacity=st.integers(1, 500),
)
def test_plays_what_was_kept_in_order_and_stays_bounded(
    ops: list[tuple[str, int]], target: int, min_depth: int, capacity: int
) -> None:
    """Whatever the interleaving: samples come out in the order written, none twice, none made
    up; what is neither played nor queued was dropped by an overrun; depth stays in bounds."""
    buf = PlaybackBuffer(1000, target_s=target / 1000, min_s=min_depth / 1000, max_s=capacity / 1000)
    kept: list[int] = []
    played: list[int] = []
    written = 0
    for op, n in ops:
        if op == "w":
            samples = ramp(n, written) + 1  # never 0, so silence is told apart from audio
            kept += samples[: buf.write(samples)].tolist()
            written += n
        elif op == "r":
            out = buf.read(n).tolist()
            audio = [v for v in out if v != 0]
            assert out[: len(audio)] == audio  # audio first, then silence: never a gap inside a read
            played += audio
        else:
            buf.end()
        assert 0 <= buf.queued <= buf.capacity
    assert played == kept[: len(played)]
    assert len(played) + buf.queued == len(kept)
    assert buf.dropped == written - len(kept)

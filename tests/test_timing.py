"""Character timing from word spans, and the estimate used when an engine gives none."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from speechwire.engines.timing import align_spans, align_words, estimate_alignment


def test_align_words_spreads_each_word_over_its_span() -> None:
    a = align_words("Hi you. ", [(100, 300), (400, 600)], 700)
    assert a is not None
    assert a.text == "Hi you. "
    assert a.start_ms[0] == 100 and a.start_ms[1] == 200  # "H", "i" share 100..300
    assert a.start_ms[3] == 400  # "y"
    assert a.start_ms[6] == 550  # punctuation attached to a word shares its span
    assert (a.start_ms[7], a.end_ms) == (600, 700)  # the trailing space takes the tail


def test_word_count_mismatch_returns_none() -> None:
    assert align_words("It costs 42 dollars", [(0, 1), (1, 2)], 10) is None


@given(
    st.text(alphabet=st.sampled_from(list("ab ,.")), min_size=1, max_size=60),
    st.floats(min_value=0, max_value=5000),
)
def test_estimate_covers_text_and_never_goes_back(text: str, total: float) -> None:
    a = estimate_alignment(text, 0.1 * total, 0.9 * total, total)
    assert a.text == text
    assert list(a.start_ms) == sorted(a.start_ms)
    assert all(d >= 0 for d in a.duration_ms)


def test_overlapping_spans_are_clipped() -> None:
    a = align_spans("ab cd", [(0, 2, 0, 100), (1, 5, 50, 200)], 200)
    assert a.text == "ab cd"
    assert list(a.start_ms) == sorted(a.start_ms)

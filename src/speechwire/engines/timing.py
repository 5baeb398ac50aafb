"""Character timing from word timing, or an estimate when an engine gives none.

Shared by every engine so that each produces the same shape: ``chars`` cover the input text
exactly (whitespace included) and times never go backwards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from speechwire.audio.alignment import CharAlignment

_WORD = re.compile(r"\S*\w\S*")


def _spread(starts: list[float], ends: list[float], lo: int, hi: int, t0: float, t1: float) -> None:
    """Give characters ``lo..hi`` equal shares of ``t0..t1``."""
    n = hi - lo
    if n <= 0:
        return
    step = max(0.0, t1 - t0) / n
    for k in range(n):
        starts[lo + k] = t0 + k * step
        ends[lo + k] = t0 + (k + 1) * step


def _to_alignment(text: str, starts: list[float], ends: list[float]) -> CharAlignment:
    start_ms: list[int] = []
    dur_ms: list[int] = []
    previous = 0
    for s, e in zip(starts, ends, strict=True):
        a = max(previous, round(s))
        b = max(a, round(e))
        start_ms.append(a)
        dur_ms.append(b - a)
        previous = a
    return CharAlignment(tuple(text), tuple(start_ms), tuple(dur_ms))


def align_spans(text: str, spans: Sequence[tuple[int, int, float, float]], total_ms: float) -> CharAlignment:
    """Character timing from (first char, end char, start ms, end ms) spans of spoken words.

    Characters of a word share its span evenly; characters between words (spaces, punctuation)
    share the gap. Spans must be in text order; overlapping ones are clipped.
    """
    starts = [0.0] * len(text)
    ends = [0.0] * len(text)
    cursor_char, cursor_ms = 0, 0.0
    for lo, hi, s, e in spans:
        lo = max(lo, cursor_char)
        hi = min(max(hi, lo), len(text))
        s = max(s, cursor_ms)
        e = max(e, s)
        _spread(starts, ends, cursor_char, lo, cursor_ms, s)
        _spread(starts, ends, lo, hi, s, e)
        cursor_char, cursor_ms = hi, e
    _spread(starts, ends, cursor_char, len(text), cursor_ms, max(cursor_ms, total_ms))
    return _to_alignment(text, starts, ends)


def align_words(
    text: str, word_spans_ms: Sequence[tuple[float, float]], total_ms: float
) -> CharAlignment | None:
    """Character timing from one (start, end) span per spoken word of ``text``.

    Returns None when the engine's word count differs from the text's (numbers spelled out,
    abbreviations): the caller then falls back to an estimate rather than misalign.
    """
    words = list(_WORD.finditer(text))
    if len(words) != len(word_spans_ms) or not words:
        return None
    spans = [(m.start(), m.end(), s, e) for m, (s, e) in zip(words, word_spans_ms, strict=True)]
    return align_spans(text, spans, total_ms)


def _weight(ch: str) -> float:
    if ch.isalnum():
        return 1.0
    if ch.isspace():
        return 0.4
    return 0.8 if ch in ",;:.!?—" else 0.2


def estimate_alignment(
    text: str, speech_start_ms: float, speech_end_ms: float, total_ms: float
) -> CharAlignment:
    """An estimate: the speech span shared among characters by a rough per-character weight.

    Used only when an engine reports no timing; documented as an estimate in ``Synthesis``.
    """
    if not text:
        return CharAlignment.empty()
    weights = [_weight(ch) for ch in text]
    total_weight = sum(weights) or 1.0
    span = max(0.0, speech_end_ms - speech_start_ms)
    starts, ends = [], []
    t = speech_start_ms
    for w in weights:
        starts.append(t)
        t += span * w / total_weight
        ends.append(t)
    if ends:
        ends[-1] = max(ends[-1], total_ms)
    return _to_alignment(text, starts, ends)

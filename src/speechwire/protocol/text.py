"""Where to split text for synthesis, so the first sound comes fast and the rest sounds natural.

Pure functions: the pieces always concatenate back to the input, so alignment covers every
character exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_CLAUSE = re.compile(r"(?<=[,;:—])\s+")
_WORD = re.compile(r"\S+\s*")
_BREAK = re.compile(r"<break(?:\s+time\s*=\s*[\"']\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*[\"'])?\s*/?>", re.IGNORECASE)

LONG_SENTENCE_CHARS = 90
"""Sentences longer than this are split at clause marks: first audio of the sentence comes sooner."""
MIN_CLAUSE_CHARS = 20
"""…but no clause piece shorter than this, because very short pieces sound choppy."""
MAX_PIECE_CHARS = 90
"""No piece is longer than this (a clause longer is cut at words, seamlessly): one engine call
is the unit the scheduler cannot interrupt, and on 2 cores ~90 characters (~120 ms of Piper
work) keeps a barge-in's wait for the call in flight short."""
MAX_BREAK_MS = 3000
"""SSML ``<break>`` is capped at 3 s, as upstream does."""
DEFAULT_BREAK_MS = 500
"""A ``<break/>`` without ``time``."""
QUICK_FIRST_MAX_CHARS = 24
"""A leading clause up to this long is a natural quick first phrase ("Hello there, ")."""


@dataclass(frozen=True, slots=True)
class Piece:
    """A span of text to synthesise on its own.

    ``seamless`` marks a split inside a clause (no punctuation at the cut): the audio of this piece
    and the next should be joined without the pause an engine leaves at a phrase end.
    """

    text: str
    seamless: bool = False
    break_ms: int | None = None
    """Set for an SSML ``<break>``: silence of this length instead of speech (``text`` is the tag)."""


def _split_keep(text: str, pattern: re.Pattern[str]) -> list[str]:
    pieces, start = [], 0
    for m in pattern.finditer(text):
        pieces.append(text[start : m.end()])
        start = m.end()
    if start < len(text):
        pieces.append(text[start:])
    return [p for p in pieces if p]


def _merge_short(parts: list[str], minimum: int) -> list[str]:
    merged: list[str] = []
    for part in parts:
        if merged and (len(merged[-1].strip()) < minimum or len(part.strip()) < minimum // 2):
            merged[-1] += part
        else:
            merged.append(part)
    return merged


def ends_phrase(text: str) -> bool:
    """Whether ``text`` ends at punctuation, where a pause sounds natural."""
    return text.rstrip()[-1:] in tuple(".!?…,;:—)\"'")


def _word_runs(clause: str) -> list[Piece]:
    """A clause over ``MAX_PIECE_CHARS`` cut at words into near-equal runs, joined seamlessly."""
    if len(clause) <= MAX_PIECE_CHARS:
        return [Piece(clause)]
    tokens = _WORD.findall(clause)
    lead = clause[: len(clause) - len(clause.lstrip())]
    parts = -(-len(clause) // MAX_PIECE_CHARS)
    target = len(clause) / parts
    runs: list[str] = [lead]
    for token in tokens:
        if len(runs[-1]) + len(token) > target and runs[-1].strip():
            runs.append("")
        runs[-1] += token
    return [Piece(r, seamless=i < len(runs) - 1) for i, r in enumerate(runs)]


def split_sentences(text: str) -> list[str]:
    """Sentences, each keeping its trailing whitespace; long ones split further at clause marks."""
    out: list[str] = []
    for sentence in _split_keep(text, _SENTENCE):
        if len(sentence) > LONG_SENTENCE_CHARS:
            out.extend(_merge_short(_split_keep(sentence, _CLAUSE), MIN_CLAUSE_CHARS))
        else:
            out.append(sentence)
    return out


def _units(text: str) -> list[Piece]:
    """Sentences, clauses of long sentences, and word runs of long clauses."""
    return [unit for part in split_sentences(text) for unit in _word_runs(part)]


def quick_first(sentence: str, words: int) -> list[Piece]:
    """Split a short opening phrase off ``sentence`` so its audio is ready in a few tens of ms.

    A leading clause that is short enough is used as it is (a natural pause); otherwise the first
    ``words`` words, marked seamless, only when at least three words remain (a tiny tail would sound
    worse than the latency it saves).
    """
    if words <= 0:
        return [Piece(sentence)]
    clauses = _split_keep(sentence, _CLAUSE)
    if len(clauses) > 1 and len(clauses[0].strip()) <= QUICK_FIRST_MAX_CHARS:
        return [Piece(clauses[0]), Piece("".join(clauses[1:]))]
    tokens = _WORD.findall(sentence)
    lead = len(sentence) - len(sentence.lstrip())
    if len(tokens) < words + 3:
        return [Piece(sentence)]
    head = sentence[:lead] + "".join(tokens[:words])
    return [Piece(head, seamless=True), Piece(sentence[len(head) :])]


def break_ms(tag: str) -> int:
    """The silence an SSML ``<break>`` tag asks for, capped at ``MAX_BREAK_MS``."""
    m = _BREAK.fullmatch(tag.strip())
    if m is None or m.group(1) is None:
        return DEFAULT_BREAK_MS
    value = float(m.group(1)) * (1000 if m.group(2).lower() == "s" else 1)
    return min(MAX_BREAK_MS, round(value))


def _text_runs(text: str, ssml: bool) -> list[Piece]:
    """Text runs and, with SSML parsing, the ``<break>`` tags between them."""
    if not ssml:
        return [Piece(text)]
    runs: list[Piece] = []
    start = 0
    for m in _BREAK.finditer(text):
        if m.start() > start:
            runs.append(Piece(text[start : m.start()]))
        runs.append(Piece(m.group(0), break_ms=break_ms(m.group(0))))
        start = m.end()
    if start < len(text):
        runs.append(Piece(text[start:]))
    return runs


def segment(text: str, *, quick_start: bool, first_words: int = 2, ssml: bool = False) -> list[Piece]:
    """Pieces to synthesise in order. With ``quick_start`` the first piece is a short phrase;
    with ``ssml`` each ``<break>`` tag is a piece of its own (silence, see ``Piece.break_ms``)."""
    pieces: list[Piece] = []
    for run in _text_runs(text, ssml):
        if run.break_ms is not None:
            pieces.append(run)
            continue
        units = _units(run.text)
        if quick_start and units:
            first = units[0]
            head = quick_first(first.text, first_words)
            if len(head) > 1:
                units = [*head[:-1], Piece(head[-1].text, first.seamless), *units[1:]]
        quick_start = False
        pieces.extend(units)
    # Whitespace alone makes no sound: fold it into the previous piece.
    folded: list[Piece] = []
    for piece in pieces:
        if folded and not piece.text.strip():
            last = folded[-1]
            folded[-1] = Piece(last.text + piece.text, last.seamless, last.break_ms)
        else:
            folded.append(piece)
    return folded

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

LONG_SENTENCE_CHARS = 180
"""Sentences longer than this are split at clause marks: first audio of the sentence comes sooner."""
MIN_CLAUSE_CHARS = 40
"""…but no clause piece shorter than this, because very short pieces sound choppy."""
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


def split_sentences(text: str) -> list[str]:
    """Sentences, each keeping its trailing whitespace; long ones split further at clause marks."""
    out: list[str] = []
    for sentence in _split_keep(text, _SENTENCE):
        if len(sentence) > LONG_SENTENCE_CHARS:
            out.extend(_merge_short(_split_keep(sentence, _CLAUSE), MIN_CLAUSE_CHARS))
        else:
            out.append(sentence)
    return out


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


def segment(text: str, *, quick_start: bool, first_words: int = 2) -> list[Piece]:
    """Pieces to synthesise in order. With ``quick_start`` the first piece is a short phrase."""
    sentences = split_sentences(text)
    if not sentences:
        return []
    pieces: list[Piece] = []
    if quick_start:
        pieces.extend(quick_first(sentences[0], first_words))
        sentences = sentences[1:]
    pieces.extend(Piece(s) for s in sentences)
    # Whitespace alone makes no sound: fold it into the previous piece.
    folded: list[Piece] = []
    for piece in pieces:
        if folded and not piece.text.strip():
            folded[-1] = Piece(folded[-1].text + piece.text, folded[-1].seamless)
        else:
            folded.append(piece)
    return folded

"""Word error rate with English text normalisation, for scoring what the engines say and hear.

Both sides are normalised the same way (case, punctuation, numbers spelled out, a few spelling
variants) so that WER counts recognition errors, not formatting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

SPELLING = {
    # Abbreviations a recogniser may or may not expand.
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "st": "saint",
    # British and American spellings that occur in the test speech.
    "counseled": "counselled",
    "dishonored": "dishonoured",
    "honor": "honour",
    "color": "colour",
    "favor": "favour",
    "neighbor": "neighbour",
    "labor": "labour",
    "traveled": "travelled",
}
"""Spelling variants mapped to one form. A table, not a rule, so nothing else is changed."""


def _number_words(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (_number_words(n % 100) if n % 100 else [])
    if n < 10000 and 1100 <= n <= 1999 and n % 100 >= 10:
        return _number_words(n // 100) + _number_words(n % 100)  # years: fourteen fifty five
    if n < 1_000_000:
        rest = _number_words(n % 1000) if n % 1000 else []
        return [*_number_words(n // 1000), "thousand", *rest]
    return [str(n)]


def normalize(text: str) -> list[str]:
    """Lower-case words with punctuation removed, numbers spelled out, variants unified."""
    text = text.lower().replace("’", "'").replace("‘", "'")
    text = re.sub(r"[-–—/]", " ", text)
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)
    words: list[str] = []
    for token in re.findall(r"[a-z0-9']+", text):
        token = token.strip("'")
        if not token:
            continue
        if token.isdigit():
            words.extend(_number_words(int(token)))
            continue
        words.append(SPELLING.get(token, token))
    return words


@dataclass(frozen=True, slots=True)
class WerResult:
    """Edit counts against ``words`` reference words."""

    substitutions: int
    deletions: int
    insertions: int
    words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / self.words if self.words else float(self.errors > 0)

    def __add__(self, other: WerResult) -> WerResult:
        return WerResult(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.words + other.words,
        )


def wer(reference: str, hypothesis: str) -> WerResult:
    """Levenshtein alignment of normalised words, counting each kind of edit."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    # Each cell holds (cost, substitutions, deletions, insertions).
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            if ref[i - 1] == hyp[j - 1]:
                best = prev[j - 1]
            else:
                s, d, a = prev[j - 1], prev[j], cur[j - 1]
                best = min(
                    (s[0] + 1, s[1] + 1, s[2], s[3]),
                    (d[0] + 1, d[1], d[2] + 1, d[3]),
                    (a[0] + 1, a[1], a[2], a[3] + 1),
                )
            cur.append(best)
        prev = cur
    _, subs, dels, ins = prev[-1]
    return WerResult(subs, dels, ins, len(ref))


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> WerResult:
    """Errors summed over all pairs, divided by all reference words."""
    return sum((wer(reference, hypothesis) for reference, hypothesis in pairs), WerResult(0, 0, 0, 0))

"""WER and its text normalisation, on hand-computed cases."""

from __future__ import annotations

from speechwire.bench.wer import corpus_wer, normalize, wer


def test_normalize() -> None:
    assert normalize("Forty-two, Mr. Quilter's 1455!") == [
        "forty",
        "two",
        "mister",
        "quilter's",
        "fourteen",
        "fifty",
        "five",
    ]
    assert normalize("It's 70 degrees") == ["it's", "seventy", "degrees"]
    assert normalize("counseled") == normalize("COUNSELLED")


def test_wer_counts_each_edit_kind() -> None:
    r = wer("the cat sat on the mat", "the cat sat on a mat today")
    assert (r.substitutions, r.deletions, r.insertions, r.words) == (1, 0, 1, 6)
    assert abs(r.rate - 2 / 6) < 1e-9
    r = wer("a b c d", "a d")
    assert (r.deletions, r.errors) == (2, 2)
    assert wer("Hello, world.", "hello world").rate == 0


def test_corpus_wer_weights_by_reference_words() -> None:
    total = corpus_wer([("a b c d", "a b c d"), ("x y", "x z")])
    assert total.errors == 1 and total.words == 6

"""Moonshine's own segmenter adds 0.06–0.16 s lines before a phrase ("You", "?", "2"); joined,
they were the junk first words of transcripts (issue 15, item 9). They are dropped."""

from __future__ import annotations

from types import SimpleNamespace

from speechwire.audio.wav import read_wav
from speechwire.engines.moonshine import MoonshineEngine, real_lines

from .conftest import SPEECH_DIR


def test_fragments_beside_a_phrase_are_dropped_a_short_line_alone_kept() -> None:
    you, phrase = (
        SimpleNamespace(text="You", duration=0.06),
        SimpleNamespace(text="The invention", duration=4.4),
    )
    assert real_lines([you, phrase]) == [phrase]
    yes = SimpleNamespace(text="Yes.", duration=0.15)
    assert real_lines([yes]) == [yes]


def test_a_phrase_moonshine_prefixed_with_you() -> None:
    pcm, rate = read_wav(SPEECH_DIR / "lj_concat_long.wav")
    engine = MoonshineEngine()
    text = engine.recognize(pcm[int(27.75 * rate) : int(32.20 * rate)]).text
    assert text.startswith("The invention"), text

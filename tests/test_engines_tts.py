"""The local TTS engines on their own: audio, timing from the engine, thread safety."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechwire.engines.base import SynthesisOptions, TTSEngine
from speechwire.engines.espeak import EspeakEngine
from speechwire.engines.piper import PiperEngine
from speechwire.engines.synthesis import windows

TEXT = "Turn left at the next intersection, then continue for half a mile."


@pytest.fixture(scope="module", params=["piper", "espeak"])
def engine(request: pytest.FixtureRequest) -> TTSEngine:
    e: TTSEngine = PiperEngine() if request.param == "piper" else EspeakEngine()
    e.load()
    return e


def voice_of(engine: TTSEngine) -> str:
    return engine.voices()[0].voice_id


def test_audio_and_engine_timing(engine: TTSEngine) -> None:
    r = engine.synthesize(TEXT, voice_of(engine), SynthesisOptions())
    assert r.alignment_source == "engine"
    assert r.alignment.text == TEXT
    assert 2.0 < r.duration_ms / 1000 < 8.0
    assert float(np.sqrt(np.mean(r.pcm.astype(np.float64) ** 2))) > 300
    assert list(r.alignment.start_ms) == sorted(r.alignment.start_ms)
    assert r.alignment.end_ms <= r.duration_ms + 5
    # Word starts spread over the audio: "mile" starts in the last third.
    assert r.alignment.start_ms[TEXT.index("mile")] > 0.6 * r.duration_ms


def test_speed_changes_duration(engine: TTSEngine) -> None:
    slow = engine.synthesize(TEXT, voice_of(engine), SynthesisOptions(speed=0.8))
    fast = engine.synthesize(TEXT, voice_of(engine), SynthesisOptions(speed=1.2))
    # Measured 1.26-1.32 for Piper (phrase-end silence does not scale), about 1.5 for espeak.
    assert slow.duration_ms > 1.15 * fast.duration_ms


def test_concurrent_calls_are_safe(engine: TTSEngine) -> None:
    single = engine.synthesize(TEXT, voice_of(engine), SynthesisOptions())
    with ThreadPoolExecutor(4) as ex:
        results = list(
            ex.map(lambda _: engine.synthesize(TEXT, voice_of(engine), SynthesisOptions()), range(8))
        )
    for r in results:
        assert r.alignment.text == TEXT
        assert abs(r.duration_ms - single.duration_ms) < 0.25 * single.duration_ms


def test_text_without_words_is_silent_but_aligned(engine: TTSEngine) -> None:
    r = engine.synthesize(" ... ", voice_of(engine), SynthesisOptions())
    assert r.alignment.text == " ... "
    assert r.duration_ms < 1500


def test_numbers_fall_back_to_an_estimate_that_still_covers_the_text() -> None:
    e = PiperEngine()
    r = e.synthesize("It costs 42 dollars.", "joe", SynthesisOptions())
    assert r.alignment.text == "It costs 42 dollars."
    assert list(r.alignment.start_ms) == sorted(r.alignment.start_ms)


def test_espeak_non_ascii_positions() -> None:
    e = EspeakEngine()
    text = "café au lait, naïve reader."
    r = e.synthesize(text, "espeak-en", SynthesisOptions())
    assert r.alignment.text == text
    assert r.alignment.start_ms[text.index("reader")] > r.alignment.start_ms[text.index("naïve")]


def test_espeak_and_piper_coexist_in_one_process() -> None:
    piper, espeak = PiperEngine(), EspeakEngine()
    a = piper.synthesize("Hello there.", "joe", SynthesisOptions())
    b = espeak.synthesize("Hello there.", "espeak-en", SynthesisOptions())
    c = piper.synthesize("Hello there.", "joe", SynthesisOptions())
    assert a.duration_ms > 300 and b.duration_ms > 300
    assert abs(a.duration_ms - c.duration_ms) < 0.2 * a.duration_ms


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=list("ab .!?,;:)—\"'\n<>"), max_size=3000),
    size=st.integers(5, 1000),
    ssml=st.booleans(),
)
def test_segment_windows_cover_the_text_exactly(text: str, size: int, ssml: bool) -> None:
    """Synthesis segments long text a window at a time: the windows concatenate to the text,
    none is empty or longer than the bound, and short text is one window."""
    parts = list(windows(text, ssml, size))
    assert "".join(parts) == text and all(0 < len(p) <= size for p in parts)
    if len(text) <= size:
        assert parts == ([text] if text else [])

"""Whisper base (multilingual): assembled from its two packages, checked, and used for any language."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from speechwire.audio.wav import read_wav
from speechwire.bench.wer import wer
from speechwire.engines.whisper import (
    WHISPER_BASE,
    WHISPER_BASE_SIZE,
    WhisperEngine,
    assemble,
    whisper_base_path,
)

from .conftest import SPEECH_DIR


def test_assembly_is_checked_atomic_and_reused(tmp_path: Path) -> None:
    folder = whisper_base_path(tmp_path)
    model = folder / "model.bin"
    assert model.stat().st_size == WHISPER_BASE_SIZE
    assert {"config.json", "tokenizer.json", "vocabulary.json"} <= {p.name for p in folder.iterdir()}
    assert not [p for p in folder.iterdir() if p.name.startswith(".model.bin.")]  # no temporary left
    mtime = model.stat().st_mtime_ns
    assert whisper_base_path(tmp_path) == folder and model.stat().st_mtime_ns == mtime  # not rebuilt


def test_torn_model_is_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "whisper-base"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"torn")
    assert (whisper_base_path(tmp_path) / "model.bin").stat().st_size == WHISPER_BASE_SIZE


def test_parts_that_do_not_join_to_the_pinned_model_are_refused(tmp_path: Path) -> None:
    # The real parts joined in the wrong order: the size is right, the SHA-256 is not.
    swapped = dataclasses.replace(WHISPER_BASE, parts=WHISPER_BASE.parts[::-1])
    with pytest.raises(RuntimeError, match="parts do not assemble to the pinned model"):
        assemble(swapped, tmp_path)
    assert list((tmp_path / "whisper-base").iterdir()) == []  # neither a model nor a temporary left


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> WhisperEngine:
    engine = WhisperEngine(whisper_base_path(tmp_path_factory.mktemp("cache")), multilingual=True)
    engine.load()
    return engine


def test_auto_detects_language_and_transcribes(base: WhisperEngine) -> None:
    pcm, _ = read_wav(SPEECH_DIR / "jfk.wav")
    result = base.recognize(pcm, language=None)
    reference = (
        "And so my fellow Americans, ask not what your country can do for you, "
        "ask what you can do for your country."
    )
    assert wer(reference, result.text).rate <= 0.1, result.text

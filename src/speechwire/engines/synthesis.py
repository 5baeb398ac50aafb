"""The synthesis policy, beside the recognition policy: from text to encoded audio chunks with
character timing, the same for every TTS route and any ``TTSEngine``.

Where to split text (pure functions: the pieces always concatenate back to the input, so
alignment covers every character exactly once) so that the first sound comes fast and the rest
sounds natural, then one ``SpeechPipeline`` per stream: a quick first phrase when the listener is
waiting, no piece over ``MAX_PIECE_CHARS``, the engine run in the shared pool with a playback
deadline one piece at a time (the next job is queued only when the previous one is done, so
another stream's urgent job can always get in between), pieces split inside a clause joined
without the engine's phrase-end pause (the seams), and encoding to the output format. With SSML
parsing a ``<break>`` becomes silence.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import numpy.typing as npt

from speechwire.audio.alignment import CharAlignment
from speechwire.audio.codecs import make_encoder
from speechwire.audio.formats import AudioFormat
from speechwire.engines.base import Synthesis, SynthesisOptions, TTSEngine, VoiceInfo
from speechwire.engines.pool import EnginePool, Lane

_SENTENCE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|(?<=[。！？])[」』）\"')\]]*\s*")
_CLAUSE = re.compile(r"(?<=[,;:—])\s+|(?<=[、，；：])\s*")
"""Latin marks end a sentence or clause only before a space ("3.5", "e.g."); the full-width
marks of Japanese and Chinese (。！？、，) end one where they stand, since those scripts put no
space after them: a flushed Japanese text's first clause is then its quick first phrase."""
_WORD = re.compile(r"\S+\s*")
_BREAK = re.compile(r"<break(?:\s+time\s*=\s*[\"']\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*[\"'])?\s*/?>", re.IGNORECASE)

LONG_SENTENCE_CHARS = 90
"""Sentences longer than this are split at clause marks: first audio of the sentence comes sooner."""
MIN_CLAUSE_CHARS = 20
"""…but no clause piece shorter than this, because very short pieces sound choppy."""
MAX_PIECE_CHARS = 90
"""No piece is longer than this (a clause longer is cut at words, seamlessly): one engine call
is the unit the scheduler cannot interrupt, and on 2 cores ~90 characters (~120 ms of Piper
work) keeps a barge-in's wait for the call in flight short."""
MAX_BREAK_MS = 3000
"""SSML ``<break>`` is capped at 3 s, as upstream does."""
DEFAULT_BREAK_MS = 500
"""A ``<break/>`` without ``time``."""
QUICK_FIRST_MAX_CHARS = 24
"""A leading clause up to this long is a natural quick first phrase ("Hello there, ")."""


@dataclass(frozen=True, slots=True)
class Piece:
    """A span of text to synthesise on its own.

    ``seamless`` marks a split inside a clause (no punctuation at the cut): the audio of this piece
    and the next should be joined without the pause an engine leaves at a phrase end.
    """

    text: str
    seamless: bool = False
    break_ms: int | None = None
    """Set for an SSML ``<break>``: silence of this length instead of speech (``text`` is the tag)."""


def _split_keep(text: str, pattern: re.Pattern[str]) -> list[str]:
    pieces, start = [], 0
    for m in pattern.finditer(text):
        pieces.append(text[start : m.end()])
        start = m.end()
    if start < len(text):
        pieces.append(text[start:])
    return [p for p in pieces if p]


def _merge_short(parts: list[str], minimum: int) -> list[str]:
    merged: list[str] = []
    for part in parts:
        if merged and (len(merged[-1].strip()) < minimum or len(part.strip()) < minimum // 2):
            merged[-1] += part
        else:
            merged.append(part)
    return merged


def ends_phrase(text: str) -> bool:
    """Whether ``text`` ends at punctuation, where a pause sounds natural."""
    return text.rstrip()[-1:] in tuple(".!?…,;:—)\"'")


def _word_runs(clause: str) -> list[Piece]:
    """A clause over ``MAX_PIECE_CHARS`` cut at words into near-equal runs, joined seamlessly."""
    if len(clause) <= MAX_PIECE_CHARS:
        return [Piece(clause)]
    tokens = _WORD.findall(clause)
    lead = clause[: len(clause) - len(clause.lstrip())]
    parts = -(-len(clause) // MAX_PIECE_CHARS)
    target = len(clause) / parts
    runs: list[str] = [lead]
    for token in tokens:
        if len(runs[-1]) + len(token) > target and runs[-1].strip():
            runs.append("")
        runs[-1] += token
    return [Piece(r, seamless=i < len(runs) - 1) for i, r in enumerate(runs)]


def split_sentences(text: str) -> list[str]:
    """Sentences, each keeping its trailing whitespace; long ones split further at clause marks."""
    out: list[str] = []
    for sentence in _split_keep(text, _SENTENCE):
        if len(sentence) > LONG_SENTENCE_CHARS:
            out.extend(_merge_short(_split_keep(sentence, _CLAUSE), MIN_CLAUSE_CHARS))
        else:
            out.append(sentence)
    return out


def _units(text: str) -> list[Piece]:
    """Sentences, clauses of long sentences, and word runs of long clauses."""
    return [unit for part in split_sentences(text) for unit in _word_runs(part)]


def quick_first(sentence: str, words: int) -> list[Piece]:
    """Split a short opening phrase off ``sentence`` so its audio is ready in a few tens of ms.

    A leading clause that is short enough is used as it is (a natural pause); otherwise the first
    ``words`` words, marked seamless, only when at least three words remain (a tiny tail would sound
    worse than the latency it saves).
    """
    if words <= 0:
        return [Piece(sentence)]
    clauses = _split_keep(sentence, _CLAUSE)
    if len(clauses) > 1 and len(clauses[0].strip()) <= QUICK_FIRST_MAX_CHARS:
        return [Piece(clauses[0]), Piece("".join(clauses[1:]))]
    tokens = _WORD.findall(sentence)
    lead = len(sentence) - len(sentence.lstrip())
    if len(tokens) < words + 3:
        return [Piece(sentence)]
    head = sentence[:lead] + "".join(tokens[:words])
    return [Piece(head, seamless=True), Piece(sentence[len(head) :])]


def break_ms(tag: str) -> int:
    """The silence an SSML ``<break>`` tag asks for, capped at ``MAX_BREAK_MS``."""
    m = _BREAK.fullmatch(tag.strip())
    if m is None or m.group(1) is None:
        return DEFAULT_BREAK_MS
    value = float(m.group(1)) * (1000 if m.group(2).lower() == "s" else 1)
    return min(MAX_BREAK_MS, round(value))


def _text_runs(text: str, ssml: bool) -> list[Piece]:
    """Text runs and, with SSML parsing, the ``<break>`` tags between them."""
    if not ssml:
        return [Piece(text)]
    runs: list[Piece] = []
    start = 0
    for m in _BREAK.finditer(text):
        if m.start() > start:
            runs.append(Piece(text[start : m.start()]))
        runs.append(Piece(m.group(0), break_ms=break_ms(m.group(0))))
        start = m.end()
    if start < len(text):
        runs.append(Piece(text[start:]))
    return runs


SEGMENT_WINDOW_CHARS = 1000
"""Text is segmented this much at a time, as synthesis reaches it: segmenting is Python work per
word on the event loop, and a flushed 100,000-character buffer took the loop from every session
for tens of milliseconds (issue 14)."""

_WINDOW_CUTS = (
    re.compile(r".*[.!?…][\"'”’)\]]*\s+", re.S),
    re.compile(r".*[,;:—)]\s+", re.S),
    re.compile(r".*\s+", re.S),
)


def windows(text: str, ssml: bool = False, size: int = SEGMENT_WINDOW_CHARS) -> Iterator[str]:
    """``text`` in parts of at most ``size`` characters (longer only never: a part with no space is
    cut at ``size``), each ending after a sentence if one ends in it, else a clause, else a word,
    and never inside an SSML tag; the parts concatenate to ``text``."""
    while len(text) > size:
        head = text[:size]
        cut = next((m.end() for p in _WINDOW_CUTS if (m := p.match(head))), size)
        if ssml and (lt := head.rfind("<", 0, cut)) > max(head.rfind(">", 0, cut), 0):
            cut = lt
        yield text[:cut]
        text = text[cut:]
    if text:
        yield text


def segment(text: str, *, quick_start: bool, first_words: int = 2, ssml: bool = False) -> list[Piece]:
    """Pieces to synthesise in order. With ``quick_start`` the first piece is a short phrase;
    with ``ssml`` each ``<break>`` tag is a piece of its own (silence, see ``Piece.break_ms``)."""
    pieces: list[Piece] = []
    for run in _text_runs(text, ssml):
        if run.break_ms is not None:
            pieces.append(run)
            continue
        units = _units(run.text)
        if quick_start and units:
            first = units[0]
            head = quick_first(first.text, first_words)
            if len(head) > 1:
                units = [*head[:-1], Piece(head[-1].text, first.seamless), *units[1:]]
        quick_start = False
        pieces.extend(units)
    # Whitespace alone makes no sound: fold it into the previous piece.
    folded: list[Piece] = []
    for piece in pieces:
        if folded and not piece.text.strip():
            folded[-1] = replace(folded[-1], text=folded[-1].text + piece.text)
        else:
            folded.append(piece)
    return folded


SEAM_TAIL_MS = 30
"""Silence kept at the end of a piece cut inside a clause: enough to sound joined, not clipped."""
SEAM_HEAD_MS = 30
"""Lead-in kept before the first loud sample of the piece after a seam: quiet onsets (s, sh, f)
sit below the loudness floor and must not be cut."""
INLINE_ENCODE_S = 0.5
"""Pieces with more audio than this are encoded on a thread: encoding 9 s of audio took 7 ms
(PCM) to 50 ms (MP3) of the event loop every session shares (issue 14: a client sending runs of
letters, which espeak spells out, held everyone's first audio); a short first phrase stays inline,
where a thread hand-off would cost its latency."""

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
        on_audio: Callable[[float, float | None], None] | None = None,
        ssml: bool = False,
    ) -> None:
        self.on_audio = on_audio
        """Told of every chunk: its seconds of audio, and for a call's first chunk the seconds
        from the call to it (the server counts them in its metrics)."""
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

    async def speak(self, text: str) -> AsyncIterator[AudioOut]:
        """Audio for ``text``, piece by piece, as soon as each piece is synthesised and encoded."""
        now = time.monotonic()
        quick = self.quick_first_words > 0 and self._play_end <= now + STARVED_MARGIN_S
        first = True
        for piece in self._pieces(text, quick):
            if piece.break_ms is not None:
                result = self._silence(piece.text, piece.break_ms)
            else:
                deadline = max(time.monotonic(), self._play_end - 0.2)
                job = partial(self.engine.synthesize, piece.text, self.voice.voice_id, self.options)
                result = await self.pool.run(job, deadline, self.lane)
            if len(result.pcm) > result.sample_rate * INLINE_ENCODE_S:
                out = await asyncio.to_thread(self._encode, result, piece.seamless)
            else:
                out = self._encode(result, trim_tail=piece.seamless)
            self._trim_next_head = piece.seamless
            if out is not None:
                if self.on_audio is not None:
                    self.on_audio(out.duration_ms / 1000, time.monotonic() - now if first else None)
                first = False
                yield out

    def _pieces(self, text: str, quick: bool) -> Iterator[Piece]:
        """``segment`` a window at a time, when synthesis reaches it (``windows`` says why)."""
        for window in windows(text, self.ssml):
            pieces = segment(window, quick_start=quick, first_words=self.quick_first_words, ssml=self.ssml)
            quick = False
            if pieces and not ends_phrase(window):
                # Cut mid-clause (by the schedule or a window): join what follows without a pause.
                pieces[-1] = replace(pieces[-1], seamless=True)
            yield from pieces

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

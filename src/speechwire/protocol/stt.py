"""The ElevenLabs Scribe realtime speech-to-text protocol, without I/O.

``RealtimeParams.from_query`` validates the query string; ``STTServerSession.receive`` turns each
client frame into events (``AudioIn``, ``CommitRequested``) or raises ``ProtocolError`` whose
``error`` is the protocol's ``message_type`` (``input_error``, ``chunk_size_exceeded``…).
Message shapes follow ``shared/protocol/elevenlabs.md`` §4.

Where upstream tolerates and real clients depend on it, so do we: a query parameter we do not
know is ignored (named in ``RealtimeParams.ignored`` so the server can log it), because clients
send parameters newer than any list (``timestamps_granularity``, ``sample_rate``…); and a commit
with nothing pending is a harmless no-op (``CommitRequested(nothing_pending=True)``), because both
SDKs' ``commit()`` is called after VAD already committed, and push-to-talk double-taps.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from speechwire.audio.codecs import ulaw_decode
from speechwire.audio.formats import STT_INPUT_FORMATS, AudioFormat, UnsupportedFormat
from speechwire.protocol.errors import INTERNAL_ERROR, POLICY_VIOLATION, ProtocolError, query_bool

INPUT_ERROR = "input_error"
CHUNK_SIZE_EXCEEDED = "chunk_size_exceeded"
INVALID_REQUEST = "invalid_request"
TRANSCRIBER_ERROR = "transcriber_error"
SESSION_TIME_LIMIT = "session_time_limit_exceeded"

DEFAULT_MODEL = "scribe_v2_realtime"
MAX_PREVIOUS_TEXT_CHARS = 2000
"""Longest ``previous_text`` (context for the first chunk) accepted. Upstream's guidance is
under 50 characters; 2000 is a long paragraph, and a megabyte of it (issue 14) is refused."""

_FLAGS = (
    "include_timestamps",
    "include_language_detection",
    "enable_logging",
    "no_verbatim",
    "filter_background_audio",
)
_ACCEPTED_AND_IGNORED = ("token", "single_use_token", "entity_redaction_mode", "transcript_edit")
"""Known to us, not acted on, and not worth a log line (auth is read by the server's auth layer)."""
_REPEATABLE = ("keyterms", "secondary_languages", "entity_detection", "entity_redaction")
NEUTRAL_LOGPROB = 0.0
"""``logprob`` of a word whose engine reports no confidence (Moonshine): log(1), i.e. "no
information". Upstream's types make ``logprob`` a required number, so it is never left out."""
_RANGES: dict[str, tuple[float, float]] = {
    "vad_silence_threshold_secs": (0.3, 3.0),
    "vad_threshold": (0.1, 0.9),
    "min_speech_duration_ms": (50, 2000),
    "min_silence_duration_ms": (50, 2000),
}
_KNOWN = {"model_id", "audio_format", "language_code", "commit_strategy"}.union(
    _RANGES, _FLAGS, _REPEATABLE, _ACCEPTED_AND_IGNORED
)


def stt_error(kind: str, message: str) -> ProtocolError:
    """An STT error: ``kind`` is the ``message_type``; server faults close 1011, the rest 1008."""
    return ProtocolError(kind, message, INTERNAL_ERROR if kind == TRANSCRIBER_ERROR else POLICY_VIOLATION)


def error_message(error: ProtocolError) -> dict[str, Any]:
    """The STT error frame: ``{"message_type": <kind>, "error": <details>}``."""
    return {"message_type": error.error, "error": error.message}


@dataclass(frozen=True, slots=True)
class RealtimeParams:
    """The effective configuration of one realtime session (echoed in ``session_started``)."""

    model_id: str = DEFAULT_MODEL
    audio_format: AudioFormat = field(
        default_factory=lambda: AudioFormat.parse("pcm_16000", STT_INPUT_FORMATS)
    )
    language_code: str | None = None
    commit_strategy: str = "manual"
    vad_silence_threshold_secs: float = 1.5
    vad_threshold: float = 0.4
    min_speech_duration_ms: int = 100
    min_silence_duration_ms: int = 100
    include_timestamps: bool = False
    include_language_detection: bool = False
    enable_logging: bool = True
    no_verbatim: bool = False
    filter_background_audio: bool = False
    keyterms: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    """Names of query parameters we do not know, accepted and ignored (for a log line)."""

    @property
    def language_message(self) -> bool:
        """Whether each commit is followed by ``committed_transcript_with_timestamps``.

        Upstream sends it when either ``include_timestamps`` or ``include_language_detection`` is
        set, and only that copy carries ``language_code``: pipecat and others then treat it as
        the final and skip the plain ``committed_transcript``."""
        return self.include_timestamps or self.include_language_detection

    @staticmethod
    def from_query(items: Iterable[tuple[str, str]]) -> RealtimeParams:
        """Validate the query parameters we know; unknown ones are accepted and ignored (as the
        TTS routes do, and as upstream does): newer clients send parameters newer than any list."""
        values: dict[str, Any] = {}
        ignored: list[str] = []
        for name, value in items:
            if name in _REPEATABLE:
                values.setdefault(name, []).append(value)
            elif name not in _KNOWN:
                ignored.append(name)
            elif name in values:
                raise stt_error(INVALID_REQUEST, f"query parameter {name!r} given twice")
            else:
                values[name] = value
        kwargs: dict[str, Any] = {}
        for name, value in values.items():  # not acted on: the other repeatable ones, _ACCEPTED_AND_IGNORED
            if name == "model_id":
                kwargs["model_id"] = value
            elif name == "audio_format":
                try:
                    kwargs["audio_format"] = AudioFormat.parse(value, STT_INPUT_FORMATS)
                except UnsupportedFormat as exc:
                    raise stt_error(INVALID_REQUEST, str(exc)) from None
            elif name == "language_code":
                kwargs["language_code"] = value or None
            elif name == "commit_strategy":
                if value not in ("manual", "vad"):
                    raise stt_error(INVALID_REQUEST, f"commit_strategy must be manual or vad, got {value!r}")
                kwargs["commit_strategy"] = value
            elif name in _RANGES:
                lo, hi = _RANGES[name]
                try:
                    number = float(value)
                except ValueError:
                    raise stt_error(INVALID_REQUEST, f"{name} must be a number, got {value!r}") from None
                if not lo <= number <= hi:
                    raise stt_error(INVALID_REQUEST, f"{name} must be between {lo:g} and {hi:g}, got {value}")
                kwargs[name] = int(number) if name.endswith("_ms") else number
            elif name in _FLAGS:
                kwargs[name] = query_bool(name, value)
            elif name == "keyterms":
                if len(value) > 50 or any(len(k) > 20 for k in value):
                    raise stt_error(INVALID_REQUEST, "keyterms: at most 50 terms of at most 20 characters")
                kwargs["keyterms"] = tuple(value)
        return RealtimeParams(**kwargs, ignored=tuple(dict.fromkeys(ignored)))

    def config_json(self) -> dict[str, Any]:
        return {
            "sample_rate": self.audio_format.sample_rate,
            "audio_format": self.audio_format.name,
            "language_code": self.language_code,
            "commit_strategy": self.commit_strategy,
            # Upstream's name (asyncapi ``ConfigVadCommitStrategy``): the strategy as a string.
            "vad_commit_strategy": self.commit_strategy,
            "timestamps_granularity": "word" if self.include_timestamps else "none",
            "vad_silence_threshold_secs": self.vad_silence_threshold_secs,
            "vad_threshold": self.vad_threshold,
            "min_speech_duration_ms": self.min_speech_duration_ms,
            "min_silence_duration_ms": self.min_silence_duration_ms,
            "model_id": self.model_id,
            "enable_logging": self.enable_logging,
            "include_timestamps": self.include_timestamps,
            "include_language_detection": self.include_language_detection,
            "keyterms": list(self.keyterms),
            "no_verbatim": self.no_verbatim,
            "filter_background_audio": self.filter_background_audio,
        }


@dataclass(frozen=True, slots=True)
class AudioIn:
    """Decoded mono int16 PCM at the session's input sample rate."""

    pcm: npt.NDArray[np.int16]
    previous_text: str | None = None


@dataclass(frozen=True, slots=True)
class EncodedAudioIn:
    """A piece of a container stream (``webm_opus``): bytes in order, decoded by the server."""

    data: bytes
    previous_text: str | None = None


@dataclass(frozen=True, slots=True)
class CommitRequested:
    """The client asked to commit what it has sent (manual commit). ``nothing_pending``: no audio
    arrived since the last commit (not an error: see the module docstring): the server answers with an empty
    ``committed_transcript``, so a client that waits for the commit's answer is released."""

    nothing_pending: bool = False


STTEvent = AudioIn | EncodedAudioIn | CommitRequested


class STTState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class STTServerSession:
    """Validates client frames of one realtime socket; tracks what is not yet committed."""

    def __init__(
        self,
        params: RealtimeParams,
        *,
        max_chunk_seconds: float = 5.0,
        max_frame_bytes: int = 4 << 20,
        inactivity_timeout_s: float | None = None,
        now: float = 0.0,
    ) -> None:
        self.params = params
        self.inactivity_timeout_s = inactivity_timeout_s
        """No frame for this long ends the session with ``input_error`` (None: never). Any
        ``input_audio_chunk`` is activity, an empty one included, as upstream's keep-alive."""
        self._last_input = now
        self.state = STTState.OPEN
        fmt = params.audio_format
        width = fmt.bytes_per_sample or 2
        self.max_chunk_bytes = int(max_chunk_seconds * fmt.sample_rate * width)
        self.max_frame_bytes = max_frame_bytes
        self.chunks_received = 0
        self.uncommitted_samples = 0

    def committed(self) -> None:
        """The recogniser committed everything received so far (VAD or auto commit)."""
        self.uncommitted_samples = 0

    @property
    def deadline(self) -> float | None:
        """When the session times out for lack of input, if an inactivity timeout is set."""
        if self.inactivity_timeout_s is None or self.state is STTState.CLOSED:
            return None
        return self._last_input + self.inactivity_timeout_s

    def expire(self, now: float) -> list[STTEvent]:
        """Past the deadline the session ends with ``input_error``; before it, nothing is due."""
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            self.state = STTState.CLOSED
            raise stt_error(
                INPUT_ERROR,
                f"No message within the inactivity timeout of {self.inactivity_timeout_s:g} seconds.",
            )
        return []

    def receive(self, frame: str | bytes, now: float | None = None) -> list[STTEvent]:
        """Take one client frame (``now`` restarts the inactivity clock; tests may leave it out)."""
        if now is not None:
            self._last_input = now
        if self.state is STTState.CLOSED:
            raise stt_error(INPUT_ERROR, "The session is closed.")
        try:
            return self._receive(frame)
        except ProtocolError:
            self.state = STTState.CLOSED
            raise

    def _receive(self, frame: str | bytes) -> list[STTEvent]:
        if isinstance(frame, bytes):
            raise stt_error(INPUT_ERROR, "Expected a JSON text frame with message_type input_audio_chunk.")
        if len(frame) > self.max_frame_bytes:
            raise stt_error(CHUNK_SIZE_EXCEEDED, f"Message exceeds {self.max_frame_bytes} bytes.")
        try:
            data = json.loads(frame)
        except (json.JSONDecodeError, RecursionError):
            raise stt_error(INPUT_ERROR, "Message is not valid JSON.") from None
        if not isinstance(data, dict):
            raise stt_error(INPUT_ERROR, "Message must be a JSON object.")
        kind = data.get("message_type")
        if kind == "commit":  # documented only by ElevenLabs' skills repo; harmless to accept
            return [self._commit()]
        if kind != "input_audio_chunk":
            raise stt_error(INPUT_ERROR, f"Unknown message_type {kind!r}; expected 'input_audio_chunk'.")
        audio_b64 = data.get("audio_base_64", "")
        commit = data.get("commit", False)
        sample_rate = data.get("sample_rate")
        previous_text = data.get("previous_text")
        if not isinstance(audio_b64, str):
            raise stt_error(INPUT_ERROR, "audio_base_64 must be a string.")
        if not isinstance(commit, bool):
            raise stt_error(INPUT_ERROR, "commit must be a boolean.")
        if sample_rate is not None and (not isinstance(sample_rate, int) or isinstance(sample_rate, bool)):
            raise stt_error(INPUT_ERROR, "sample_rate must be an integer.")
        if sample_rate is not None and sample_rate != self.params.audio_format.sample_rate:
            raise stt_error(
                INPUT_ERROR,
                f"sample_rate {sample_rate} does not match audio_format {self.params.audio_format.name}.",
            )
        if previous_text is not None:
            if not isinstance(previous_text, str):
                raise stt_error(INPUT_ERROR, "previous_text must be a string.")
            if self.chunks_received > 0:
                raise stt_error(INPUT_ERROR, "previous_text is only allowed with the first audio chunk.")
            if len(previous_text) > MAX_PREVIOUS_TEXT_CHARS:
                raise stt_error(
                    INPUT_ERROR,
                    f"previous_text is at most {MAX_PREVIOUS_TEXT_CHARS} characters "
                    f"(got {len(previous_text)}).",
                )
        if len(audio_b64) > self.max_chunk_bytes * 4 // 3 + 8:
            raise stt_error(
                CHUNK_SIZE_EXCEEDED,
                f"Audio chunk exceeds {self.max_chunk_bytes} bytes; send chunks of 0.1-1 s.",
            )
        try:
            raw = base64.b64decode(audio_b64, validate=True)
        except (binascii.Error, ValueError):
            raise stt_error(INPUT_ERROR, "audio_base_64 is not valid base64.") from None
        events: list[STTEvent] = []
        if raw and self.params.audio_format.codec == "webm":
            self.uncommitted_samples += 1  # unknown until decoded; anything counts for commit
            events.append(EncodedAudioIn(raw, previous_text))
        elif raw:
            events.append(AudioIn(self._decode(raw), previous_text))
        if raw or previous_text is not None:
            self.chunks_received += 1
        if commit:
            events.append(self._commit())
        return events

    def _decode(self, raw: bytes) -> npt.NDArray[np.int16]:
        fmt = self.params.audio_format
        if fmt.codec == "ulaw":
            pcm = ulaw_decode(raw)
        else:
            if len(raw) % 2:
                raise stt_error(
                    INPUT_ERROR, f"Audio chunk has an odd byte count ({len(raw)}) for 16-bit PCM."
                )
            pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
        self.uncommitted_samples += len(pcm)
        return pcm

    def _commit(self) -> CommitRequested:
        nothing = self.uncommitted_samples == 0
        self.uncommitted_samples = 0
        return CommitRequested(nothing_pending=nothing)


def session_started(session_id: str, params: RealtimeParams) -> dict[str, Any]:
    return {"message_type": "session_started", "session_id": session_id, "config": params.config_json()}


def partial_transcript(text: str) -> dict[str, Any]:
    return {"message_type": "partial_transcript", "text": text}


def committed_transcript(text: str) -> dict[str, Any]:
    return {"message_type": "committed_transcript", "text": text}


TimedWord = tuple[str, float, float] | tuple[str, float, float, float | None]
"""(text, start_s, end_s) or (text, start_s, end_s, logprob); logprob None when unknown."""


def committed_with_timestamps(
    text: str, words: Sequence[TimedWord] | None, language_code: str | None
) -> dict[str, Any]:
    """The copy of a commit that carries ``language_code`` (and, when asked, the words).

    ``words`` have start/end in seconds from the start of the session's audio, with spacing
    items between them, each with ``logprob`` (``NEUTRAL_LOGPROB`` when the engine has none).
    ``words=None`` — language detection without timestamps — sends ``"words": null``, as
    upstream does (pipecat's handler documents the null; the asyncapi type has it optional).
    ``language_code`` is ISO 639-3 (``eng``, ``fra``), the format of upstream's Scribe responses;
    the server passes the session's given or detected language, None meaning English."""
    message: dict[str, Any] = {
        "message_type": "committed_transcript_with_timestamps",
        "text": text,
        "language_code": language_code or "eng",
        "words": None,
    }
    if words is None:
        return message
    items: list[dict[str, Any]] = []

    def item(text: str, start: float, end: float, kind: str, logprob: float | None) -> None:
        logprob = round(NEUTRAL_LOGPROB if logprob is None else logprob, 4)
        items.append(
            {"text": text, "start": round(start, 3), "end": round(end, 3), "type": kind, "logprob": logprob}
        )

    for i, word in enumerate(words):
        if i:
            prev_end = words[i - 1][2]
            item(" ", prev_end, max(prev_end, word[1]), "spacing", NEUTRAL_LOGPROB)
        item(word[0], word[1], word[2], "word", word[3] if len(word) == 4 else None)
    message["words"] = items
    return message

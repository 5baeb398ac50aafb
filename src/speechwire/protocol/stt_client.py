"""The client half of realtime STT, without I/O: audio and commit frames, events, resume.

``STTClientSession`` builds the one client message (``input_audio_chunk``, audio and/or
``commit``), parses server frames into typed events (the clock is passed in), keeps what is
uncommitted, and says which frames resume a stream on a new socket.

Policies, each with its reason:
- Uncommitted audio is kept (when ``keep`` is set) from the last ``committed_transcript`` on, and
  resent after a reconnect: a commit lost in flight is produced again from the same audio, so the
  application sees each committed segment once.
- A committed transcript commits everything sent before it arrived: in VAD mode the client cannot
  know which sample the server's commit covered; VAD commits follow ≥ 0.3 s of silence, so what
  could be lost there is silence.
- The first chunk on a new socket carries the last committed text (≤ 50 characters) as
  ``previous_text``: the recogniser keeps its context across the reconnect.
- ``committed_transcript_with_timestamps`` is parsed as a copy (``timestamped``): the plain one
  already said the text, and clients that yield both would say it twice.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from typing import Any

PREVIOUS_TEXT_CHARS = 50


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session_id: str
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Transcript:
    """Text from the server, and when it arrived (on the caller's clock)."""

    text: str
    received_at: float


@dataclass(frozen=True, slots=True)
class PartialTranscript(Transcript):
    """Not final: the next partial or the committed transcript replaces it."""


@dataclass(frozen=True, slots=True)
class CommittedTranscript(Transcript):
    words: tuple[dict[str, Any], ...] = ()
    timestamped: bool = False
    """The ``committed_transcript_with_timestamps`` copy of a commit (``events()`` skips it)."""


@dataclass(frozen=True, slots=True)
class TranscriptError:
    error: str
    """The ``message_type`` of the error frame (``input_error``, ``auth_error``…)."""
    message: str
    code: int | None = None
    """STT error frames carry no close code (TTS ones do): None, for clients that handle both."""


TranscriptEvent = SessionStarted | PartialTranscript | CommittedTranscript
STTServerEvent = TranscriptEvent | TranscriptError


def input_audio_chunk(
    audio: bytes, sample_rate: int, *, commit: bool = False, previous_text: str | None = None
) -> dict[str, Any]:
    """The client's one message: audio (possibly empty), with ``commit`` for a manual commit."""
    message: dict[str, Any] = {
        "message_type": "input_audio_chunk",
        "audio_base_64": base64.b64encode(audio).decode("ascii"),
        "commit": commit,
        "sample_rate": sample_rate,
    }
    if previous_text:
        message["previous_text"] = previous_text
    return message


def parse_stt_server_message(frame: str | bytes, now: float) -> STTServerEvent:
    data = json.loads(frame)
    kind = data.get("message_type")
    text = str(data.get("text", ""))
    if kind == "session_started":
        return SessionStarted(str(data.get("session_id", "")), dict(data.get("config", {})))
    if kind == "partial_transcript":
        return PartialTranscript(text, now)
    if kind == "committed_transcript":
        return CommittedTranscript(text, now)
    if kind == "committed_transcript_with_timestamps":  # ``words`` is null without include_timestamps
        return CommittedTranscript(text, now, tuple(data.get("words") or ()), timestamped=True)
    return TranscriptError(str(kind), str(data.get("error", data)))


class STTClientState(enum.Enum):
    """``CONNECTING`` until ``session_started``, ``OPEN`` while audio flows, ``FAILED`` on an error."""

    CONNECTING = "connecting"
    OPEN = "open"
    FAILED = "failed"


class STTClientSession:
    """The client side of one realtime STT stream, across any number of sockets."""

    def __init__(self, sample_rate: int = 16000, *, keep: bool = False) -> None:
        self.sample_rate = sample_rate
        self.keep = keep
        self.state = STTClientState.CONNECTING
        self.pending: list[bytes] = []
        """Audio sent since the last committed transcript (kept only when ``keep``)."""
        self.last_committed = ""
        self._fresh = True  # the next chunk is the first of its socket

    def audio(self, raw: bytes, *, previous_text: str | None = None) -> str:
        if self.keep:
            self.pending.append(raw)
        return self._chunk(raw, previous_text)

    def _chunk(self, raw: bytes, previous_text: str | None = None) -> str:
        if self._fresh and previous_text is None and self.last_committed:
            previous_text = self.last_committed[-PREVIOUS_TEXT_CHARS:]
        self._fresh = False
        return json.dumps(input_audio_chunk(raw, self.sample_rate, previous_text=previous_text))

    def commit(self) -> str:
        return json.dumps(input_audio_chunk(b"", self.sample_rate, commit=True))

    def receive(self, frame: str | bytes, now: float) -> STTServerEvent:
        event = parse_stt_server_message(frame, now)
        if isinstance(event, SessionStarted):
            self.state = STTClientState.OPEN
        elif isinstance(event, CommittedTranscript) and not event.timestamped:
            self.pending.clear()  # everything sent so far is now committed: nothing to resend
            self.last_committed = event.text or self.last_committed
        elif isinstance(event, TranscriptError):
            self.state = STTClientState.FAILED
        return event

    def resume(self) -> list[str]:
        """Frames for a new socket (after its ``session_started``): the uncommitted audio again."""
        self.state = STTClientState.CONNECTING
        self._fresh = True
        return [self._chunk(raw) for raw in self.pending]

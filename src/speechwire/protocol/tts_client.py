"""The client half of ``stream-input``, without I/O: frames to send, events received, resume.

``TTSClientSession`` builds every frame a TTS client sends (init, text, flush, keep-alive, end),
parses every frame it receives into ``AudioReceived`` / ``FinalReceived`` / ``ErrorReceived``,
counts from alignment which characters were voiced, and after a reconnect says which frames
resume the stream (the unvoiced rest, in order). The caller owns the socket and the clock.

Policies, each with its reason:
- Voiced characters are counted by ``advance_voiced`` (below, with its reason); the browser's
  ``wire.js`` has the same function, and a test runs both on the same cases.
- Resume sends the first message again, then the unvoiced rest: the part that had been flushed
  with ``flush``, the rest without, and the end of input if it had been sent — audio lost in
  flight is synthesised again, audio received is never repeated.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from typing import Any

from speechwire.audio.alignment import CharAlignment

INIT_TEXT = " "
"""The first message's conventional text: voices nothing, is not part of the aligned text."""


@dataclass(frozen=True, slots=True)
class AudioReceived:
    audio: bytes
    alignment: CharAlignment | None
    normalized_alignment: CharAlignment | None
    context_id: str | None = None


@dataclass(frozen=True, slots=True)
class FinalReceived:
    context_id: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    error: str
    message: str
    code: int
    context_id: str | None = None
    """Set when the error ends one ``multi-stream-input`` context, not the socket."""


ServerEvent = AudioReceived | FinalReceived | ErrorReceived


def _alignment_from_json(data: Any) -> CharAlignment | None:
    if not isinstance(data, dict):
        return None
    durations = data.get("charDurationsMs", data.get("charsDurationsMs"))
    chars, starts = data.get("chars"), data.get("charStartTimesMs")
    if not (isinstance(chars, list) and isinstance(starts, list) and isinstance(durations, list)):
        return None
    return CharAlignment(
        tuple(str(c) for c in chars), tuple(int(s) for s in starts), tuple(int(d) for d in durations)
    )


def parse_server_message(frame: str | bytes) -> ServerEvent:
    """Decode a server frame of ``stream-input`` or ``multi-stream-input`` (audio, final, or error;
    a context id is spelt both ways in upstream's documents)."""
    data = json.loads(frame)
    if not isinstance(data, dict):
        raise ValueError("server frame is not a JSON object")
    audio = data.get("audio")
    cid = data.get("contextId") or data.get("context_id")
    context_id = str(cid) if cid else None
    if "error" in data and "message" in data and not audio:
        return ErrorReceived(
            str(data["error"]), str(data["message"]), int(data.get("code", 1008)), context_id
        )
    if data.get("isFinal") or data.get("is_final"):
        if audio:
            raise ValueError("final frame carries audio")
        return FinalReceived(context_id)
    return AudioReceived(
        base64.b64decode(audio) if isinstance(audio, str) else b"",
        _alignment_from_json(data.get("alignment")),
        _alignment_from_json(data.get("normalizedAlignment")),
        context_id,
    )


def advance_voiced(sent: str, voiced: int, event: AudioReceived) -> int:
    """Where the unvoiced rest of ``sent`` starts once this chunk is voiced (``voiced`` before it).

    Each non-space character of the chunk's alignment (else ``normalizedAlignment``) voices the
    next non-space character of ``sent``; its whitespace consumes whitespace of ``sent`` only where
    ``sent`` has it. Exact for our server, whose alignment concatenates to the text sent, and still
    right when an upstream drops, adds or collapses whitespace in its alignment."""
    alignment = event.alignment or event.normalized_alignment
    if alignment is None:
        return voiced
    for char in "".join(alignment.chars):
        if char.isspace():
            if voiced < len(sent) and sent[voiced].isspace():
                voiced += 1
            continue
        while voiced < len(sent) and sent[voiced].isspace():
            voiced += 1
        voiced = min(voiced + 1, len(sent))
    return voiced


def text_frame(text: str, *, flush: bool = False, try_trigger_generation: bool = False, **extra: Any) -> str:
    message: dict[str, Any] = {"text": text, **extra}
    if flush:
        message["flush"] = True
    if try_trigger_generation:
        message["try_trigger_generation"] = True
    return json.dumps(message)


@dataclass
class TextLog:
    """The text of one stream (or context) after its first message, and how much of it was voiced."""

    sent: str = ""
    flushed_upto: int = 0
    voiced: int = 0
    """How much of ``sent`` audio received has voiced (an index into it)."""

    def add(self, text: str, flush: bool = False) -> None:
        self.sent += text
        if flush:
            self.flushed_upto = len(self.sent)

    def rest(self, **extra: Any) -> list[str]:
        """Frames that send the unvoiced rest again: the flushed part with ``flush``, then the rest."""
        start = self.voiced
        flushed = self.sent[start : max(start, self.flushed_upto)]
        unflushed = self.sent[max(start, self.flushed_upto) :]
        frames = [text_frame(flushed, flush=True, **extra)] if flushed.strip() else []
        return frames + ([text_frame(unflushed, **extra)] if unflushed else [])


class TTSClientState(enum.Enum):
    """``IDLE`` until the first message is built, ``STREAMING`` while text may be sent, ``ENDED``
    once input ended (audio still comes), ``FINISHED`` at ``isFinal``, ``FAILED`` on an error frame."""

    IDLE = "idle"
    STREAMING = "streaming"
    ENDED = "ended"
    FINISHED = "finished"
    FAILED = "failed"


class TTSClientSession:
    """The client side of one ``stream-input`` stream, across any number of sockets."""

    def __init__(
        self,
        voice_settings: dict[str, Any] | None = None,
        chunk_length_schedule: list[int] | None = None,
    ) -> None:
        self.voice_settings = voice_settings
        self.chunk_length_schedule = chunk_length_schedule
        self.state = TTSClientState.IDLE
        self.log = TextLog()
        self.voiced_text = ""
        """The concatenated alignment characters received (what the server says it voiced)."""

    def init(self) -> str:
        """The first message: settings, and the conventional single space."""
        message: dict[str, Any] = {"text": INIT_TEXT}
        if self.voice_settings:
            message["voice_settings"] = self.voice_settings
        if self.chunk_length_schedule:
            message["generation_config"] = {"chunk_length_schedule": self.chunk_length_schedule}
        if self.state is TTSClientState.IDLE:
            self.state = TTSClientState.STREAMING
        return json.dumps(message)

    def text(self, text: str, *, flush: bool = False, try_trigger_generation: bool = False) -> str:
        """A piece of text; ``flush`` forces generation of everything buffered."""
        if not text:
            raise ValueError("use end() to finish; empty text ends the stream")
        self.log.add(text, flush)
        return text_frame(text, flush=flush, try_trigger_generation=try_trigger_generation)

    def flush(self) -> str:
        return self.text(" ", flush=True)

    def keep_alive(self) -> str:
        """The protocol's keep-alive: a single space resets the server's inactivity timer."""
        return self.text(" ")

    def end(self) -> str:
        """End of input: the server voices what is buffered, sends ``isFinal`` and closes."""
        self.state = TTSClientState.ENDED
        self.log.flushed_upto = len(self.log.sent)
        return text_frame("")

    @property
    def ended(self) -> bool:
        return self.state in (TTSClientState.ENDED, TTSClientState.FINISHED)

    def receive(self, frame: str | bytes) -> ServerEvent:
        event = parse_server_message(frame)
        if isinstance(event, AudioReceived):
            self.log.voiced = advance_voiced(self.log.sent, self.log.voiced, event)
            if event.alignment is not None:
                self.voiced_text += event.alignment.text
        elif isinstance(event, FinalReceived):
            self.state = TTSClientState.FINISHED
        else:
            self.state = TTSClientState.FAILED
        return event

    def resume(self) -> list[str]:
        """The frames that open a new socket and resume: init, the unvoiced rest, the end if sent."""
        return [self.init(), *self.log.rest(), *([text_frame("")] if self.ended else [])]

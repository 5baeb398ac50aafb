"""The client half of ``multi-stream-input``, without I/O: contexts, barge-in, resume.

``MultiClientSession`` names contexts, builds their frames (text, flush, keep-alive,
``close_context``, ``close_socket``), and turns server frames into ``ContextAudio`` /
``ContextFailed`` / ``ContextFinished`` / ``ErrorReceived`` — or nothing, for audio the
application must not hear.

Policies, each with its reason:
- ``close_context`` ends input, not audio: the server voices everything it was sent, then the
  final (upstream; pipecat and livekit close every turn that way), so a closed context's audio is
  still delivered.
- A cancelled (interrupted) context's audio is dropped until its final, by id: the server sends
  it anyway, and playing a reply the user talked over is the barge-in bug.
- Audio of a context this side never opened is dropped: it can only be a stale one's.
- An error frame with a ``contextId`` ends that context alone (``ContextFailed``, then its final
  as ``ContextFinished``); the socket and the other contexts go on, and it is not resumed.
- Resume re-opens every open or closed context under its id with its unvoiced rest (and closes
  the closed ones again); cancelled ones are forgotten, since a new socket has no audio of them.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from speechwire.audio.alignment import CharAlignment
from speechwire.protocol.tts_client import (
    INIT_TEXT,
    ErrorReceived,
    FinalReceived,
    TextLog,
    advance_voiced,
    parse_server_message,
    text_frame,
)


@dataclass(frozen=True, slots=True)
class ContextAudio:
    context_id: str
    audio: bytes
    alignment: CharAlignment | None


@dataclass(frozen=True, slots=True)
class ContextFinished:
    context_id: str


@dataclass(frozen=True, slots=True)
class ContextFailed:
    """The server ended this context on an error of its own (``queue_overflow``, ...)."""

    context_id: str
    error: str
    message: str


MultiEvent = ContextAudio | ContextFailed | ContextFinished | ErrorReceived


@dataclass
class _Context:
    voice_settings: dict[str, Any] | None
    log: TextLog = field(default_factory=TextLog)


class MultiClientSession:
    """The client side of one ``multi-stream-input`` socket (and the sockets that resume it)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._contexts: dict[str, _Context] = {}
        self.current: str | None = None
        self.open_contexts: set[str] = set()
        self.closed_contexts: set[str] = set()
        """Closed, final not yet received: their audio is still delivered (end of turn)."""
        self.cancelled_contexts: set[str] = set()
        """Interrupted, final not yet received: their audio is dropped."""
        self.dropped_chunks = 0

    def start_context(
        self, text: str = INIT_TEXT, *, flush: bool = False, voice_settings: dict[str, Any] | None = None
    ) -> tuple[str, str]:
        """A new context (it becomes the current one) with optional first text: (id, frame)."""
        cid = f"ctx-{next(self._ids)}"
        self._contexts[cid] = _Context(voice_settings)
        self.open_contexts.add(cid)
        self.current = cid
        if text != INIT_TEXT:
            self._contexts[cid].log.add(text, flush)
        return cid, self._opening(cid, text, flush)

    def _opening(self, cid: str, text: str = INIT_TEXT, flush: bool = False) -> str:
        """A context's first frame: its id and voice settings, with its first text."""
        settings = self._contexts[cid].voice_settings
        extra: dict[str, Any] = {"voice_settings": settings} if settings else {}
        return text_frame(text, flush=flush, context_id=cid, **extra)

    def text(self, text: str, *, flush: bool = False, context_id: str | None = None) -> str:
        cid = context_id or self.current
        if cid is None:
            raise ValueError("no context: start_context() first")
        if cid in self._contexts:
            self._contexts[cid].log.add(text, flush)
        return text_frame(text, flush=flush, context_id=cid)

    def flush(self, context_id: str | None = None) -> str:
        cid = context_id or self.current
        if cid in self._contexts:
            log = self._contexts[cid].log
            log.flushed_upto = len(log.sent)
        return json.dumps({"context_id": cid, "flush": True})

    def keep_alive(self, context_id: str | None = None) -> str:
        """The per-context keep-alive: an empty text resets that context's inactivity clock."""
        return json.dumps({"context_id": context_id or self.current, "text": ""})

    def close_context(self, context_id: str | None = None, *, cancel: bool = False) -> str | None:
        """End a context's input (its audio still comes) — or with ``cancel``, drop its audio."""
        cid = context_id or self.current
        if cid is None:
            return None
        self.open_contexts.discard(cid)
        (self.cancelled_contexts if cancel else self.closed_contexts).add(cid)
        if cid == self.current:
            self.current = None
        return json.dumps({"context_id": cid, "close_context": True})

    def close_socket(self) -> str:
        return json.dumps({"close_socket": True})

    def receive(self, frame: str | bytes) -> MultiEvent | None:
        """The event for the application, or None for a frame it must not see."""
        event = parse_server_message(frame)
        if isinstance(event, ErrorReceived):
            if event.context_id is None:
                return event
            cid = event.context_id
            known = cid in self.open_contexts | self.closed_contexts
            self.open_contexts.discard(cid)
            self.closed_contexts.discard(cid)
            if cid == self.current:
                self.current = None
            return ContextFailed(cid, event.error, event.message) if known else None
        cid = event.context_id or ""
        if isinstance(event, FinalReceived):
            self.open_contexts.discard(cid)
            self.closed_contexts.discard(cid)
            self._contexts.pop(cid, None)
            if cid in self.cancelled_contexts:
                self.cancelled_contexts.discard(cid)
                return None  # the interrupted context is over: nothing to report
            return ContextFinished(cid)
        if cid in self.cancelled_contexts or cid not in self.open_contexts | self.closed_contexts:
            self.dropped_chunks += 1  # late audio of an interrupted context: never played
            return None
        if cid in self._contexts:
            log = self._contexts[cid].log
            log.voiced = advance_voiced(log.sent, log.voiced, event)
        return ContextAudio(cid, event.audio, event.alignment)

    def resume(self) -> list[str]:
        """Frames for a new socket: every open or closed context again, with its unvoiced rest."""
        self.cancelled_contexts.clear()
        frames: list[str] = []
        for cid in sorted(self.open_contexts | self.closed_contexts, key=list(self._contexts).index):
            frames += [self._opening(cid), *self._contexts[cid].log.rest(context_id=cid)]
            if cid in self.closed_contexts:
                frames.append(json.dumps({"context_id": cid, "close_context": True}))
        return frames

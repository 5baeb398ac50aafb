"""The ElevenLabs ``multi-stream-input`` protocol (several TTS contexts on one socket), no I/O.

Each context is a ``stream-input`` session of its own (buffering, schedule, flush) with these
differences from the single-context socket: an empty text is a keep-alive rather than the end,
new ``voice_settings`` re-initialise the context instead of ending the socket, and it ends with
``close_context``. Closing never discards text sent before it (upstream, and what pipecat and
livekit rely on: they send ``flush`` and ``close_context`` together at the end of every turn):
the context's text is voiced, then its final is sent. Barge-in is the client's job — it drops
late audio of a context it closed. ``close_socket`` closes them all the same way. At most
``MAX_CONTEXTS`` are *open* at once; a closed context still finishing its audio does not count.

An error of one context (its buffer; told by the route: its queue, its engine) ends that context
alone: ``ContextFailed``, then its error and its final, with its ``contextId``. Upstream documents
none and closes the socket on every error seen; ending the one context keeps pipecat working (it
ignores error frames and ends a context at its final), where a closed socket lost the other
contexts' queued audio. Errors about the socket itself (an unparseable frame, its idle timeout,
the context limit, its own bounds) still close it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, ConfigDict, Field

from speechwire.protocol.errors import ProtocolError, TTSError
from speechwire.protocol.tts import (
    ClientTextMessage,
    Generate,
    Initialized,
    StreamInputParams,
    StreamSession,
    TTSServerSession,
    TTSState,
    parse_client_message,
)

MAX_CONTEXTS = 5
DEFAULT_CONTEXT = "default"
TOO_MANY_CONTEXTS = (
    f"Maximum simultaneous contexts per WebSocket connection exceeded ({MAX_CONTEXTS}). "
    "Please close an existing context before opening a new one."
)


class MultiClientMessage(ClientTextMessage):
    """A client frame of ``multi-stream-input``: ``text`` is optional, plus the context fields."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)

    text: str = ""  # type: ignore[assignment]
    context_id: str | None = Field(default=None, validation_alias=AliasChoices("context_id", "contextId"))
    close_context: bool | None = None
    close_socket: bool | None = None


class ContextSession(TTSServerSession):
    """One context: a ``stream-input`` session whose first message may carry text, whose empty
    text is a keep-alive, and whose changed ``voice_settings`` re-initialise it."""

    empty_first_text_ends = False

    def _stream(self, message: ClientTextMessage) -> list[Any]:
        events: list[Any] = []
        if message.voice_settings is not None and message.voice_settings != self.voice_settings:
            # Upstream re-initialises the context. Text buffered so far was sent under the old
            # settings: it is generated first, so the new settings apply from this message on.
            events.extend(self._generate_all(flush=True))
            events.append(self._initialise(message))
        if message.text == "" and not message.flush:
            return events  # keep-alive: the clock was reset by receive_message
        if message.text == "":
            return events + self._generate_all(flush=True)
        return events + super()._stream(message)

    def close(self) -> list[Any]:
        """``close_context``: everything sent so far is generated (flushed or not)."""
        events: list[Any] = self._generate_all(flush=True)
        self.state = TTSState.CLOSED
        return events


@dataclass(frozen=True, slots=True)
class _ContextSettings:
    context_id: str
    init: Initialized


class ContextOpened(_ContextSettings):
    """A new context with these settings: start its speaker."""

    __slots__ = ()


class ContextReinitialized(_ContextSettings):
    """New ``voice_settings`` for this context: they apply to its ``ContextText`` after this."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ContextText:
    context_id: str
    generate: Generate


@dataclass(frozen=True, slots=True)
class ContextClosed:
    """No more input for this context: voice its ``ContextText`` already given, then send its
    final (``reason`` is ``"closed"`` or ``"timeout"``). It no longer counts as open; call
    ``MultiStreamSession.finished`` once its final is sent."""

    context_id: str
    reason: str = "closed"


@dataclass(frozen=True, slots=True)
class ContextFailed:
    """This context ended on ``error``: drop its queued text, send the error and then its final
    (both with its ``contextId``), then call ``MultiStreamSession.finished``. Others go on."""

    context_id: str
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class SocketClosing:
    """``close_socket``: finish what was flushed in every context, then close the socket."""


MultiEvent = (
    ContextOpened | ContextText | ContextReinitialized | ContextClosed | ContextFailed | SocketClosing
)


class MultiStreamSession(StreamSession):
    """Routes frames to contexts; enforces the context limit and per-context inactivity."""

    def __init__(self, params: StreamInputParams, now: float, **limits: int) -> None:
        super().__init__(params, now, **limits)
        self.contexts: dict[str, ContextSession] = {}
        self.finishing: dict[str, int] = {}
        """Closed contexts whose audio is still being sent (id → how many): a frame without text
        naming one (a late flush, keep-alive or second close) is ignored rather than opening a
        fresh context; a frame with text opens a fresh context under the same id."""
        self.closing = False

    @property
    def deadline(self) -> float:
        """The next moment a context (or the idle socket) times out."""
        if not self.contexts:
            return self._last_input + self.params.inactivity_timeout
        return min(c.deadline or float("inf") for c in self.contexts.values())

    def expire(self, now: float) -> list[MultiEvent]:
        """Contexts idle past ``inactivity_timeout`` close; an idle socket with none is an error.

        A context that times out voices what was already released for synthesis (flushed, or
        cut by the schedule) and then sends its final; text still buffered unflushed is dropped,
        because the client stopped sending without asking for it — voicing a fragment seconds
        later would surprise more than it helps.
        """
        events: list[MultiEvent] = []
        for cid, context in list(self.contexts.items()):
            if now >= (context.deadline or float("inf")):
                self._end(cid).state = TTSState.CLOSED
                events.append(ContextClosed(cid, "timeout"))
        idle = not self.contexts and not self.finishing and not events
        if idle and now >= self._last_input + self.params.inactivity_timeout:
            raise ProtocolError(
                TTSError.INPUT_TIMEOUT,
                f"No message within the timeout of {self.params.inactivity_timeout:g} "
                "seconds and no open context.",
            )
        return events

    def finished(self, context_id: str) -> None:
        """The server sent the final of a closed context: its id is no longer finishing."""
        left = self.finishing.get(context_id, 0) - 1
        if left > 0:
            self.finishing[context_id] = left
        else:
            self.finishing.pop(context_id, None)

    def _end(self, cid: str) -> ContextSession:
        """An open context stops counting as open; it is finishing until its final is sent."""
        self.finishing[cid] = self.finishing.get(cid, 0) + 1
        return self.contexts.pop(cid)

    def _close(self, cid: str, context: ContextSession) -> list[MultiEvent]:
        self._end(cid)
        events: list[MultiEvent] = [ContextText(cid, e) for e in context.close() if isinstance(e, Generate)]
        events.append(ContextClosed(cid))
        return events

    def receive(self, frame: str | bytes, now: float) -> list[MultiEvent]:
        if self.closing:
            raise ProtocolError(TTSError.INVALID_INPUT, "The socket is closing (close_socket was sent).")
        message = parse_client_message(frame, self.max_message_bytes, MultiClientMessage)
        assert isinstance(message, MultiClientMessage)
        self._last_input = now
        if message.close_socket:
            # Every open context closes as close_context would: all its text is voiced.
            self.closing = True
            closed = [e for cid, c in list(self.contexts.items()) for e in self._close(cid, c)]
            return [*closed, SocketClosing()]
        cid = message.context_id or DEFAULT_CONTEXT
        context = self.contexts.get(cid)
        settings = message.voice_settings or message.generation_config or message.generator_config
        if closing := bool(message.close_context):
            if context is None:
                return []  # closing an unknown or already closed context is harmless
            if not (message.text or message.flush):
                return self._close(cid, context)
            message = message.model_copy(update={"close_context": None})
        elif context is None and cid in self.finishing and not message.text.strip():
            return []  # a late flush or keep-alive of a context that is finishing: ignored
        elif context is None and message.text == "" and settings is None:
            # A keep-alive (or flush) naming no open context — pipecat sends a context-less one
            # between turns — keeps the socket alive; it does not open a context that would
            # take one of the 5 places and time out later with a final nobody asked for.
            return []
        opened = context is None
        if context is None:
            if len(self.contexts) >= MAX_CONTEXTS:
                raise ProtocolError(TTSError.TOO_MANY_CONTEXTS, TOO_MANY_CONTEXTS)
            context = self.contexts[cid] = ContextSession(
                self.params,
                now,
                max_message_bytes=self.max_message_bytes,
                max_buffer_chars=self.max_buffer_chars,
            )
        try:
            produced = context.receive_message(message, now)
        except ProtocolError as exc:
            return self.fail(cid, exc)  # the context's own error ends it alone
        events: list[MultiEvent] = []
        for event in produced:
            if isinstance(event, Generate):
                events.append(ContextText(cid, event))
            elif isinstance(event, Initialized):
                kind = ContextOpened if opened and not events else ContextReinitialized
                events.append(kind(cid, event))
        return events + self._close(cid, context) if closing else events

    def fail(self, context_id: str, error: ProtocolError) -> list[MultiEvent]:
        """End one context on ``error`` (its own, or the route's: its queue overflowed, its
        engine failed). An open one stops counting as open and is finishing until its final."""
        if context_id in self.contexts:
            self._end(context_id)
        return [ContextFailed(context_id, error)]


def in_context(message: dict[str, Any], context_id: str) -> dict[str, Any]:
    """A context's audio or error frame (``contextId``, camelCase, as upstream sends it)."""
    return {**message, "contextId": context_id}


def context_final(context_id: str) -> dict[str, Any]:
    """A context's final frame. Upstream is inconsistent (``isFinal`` / ``is_final``): send both."""
    return {"isFinal": True, "is_final": True, "contextId": context_id}


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))

"""The ElevenLabs ``multi-stream-input`` protocol (several TTS contexts on one socket), no I/O.

Each context is a ``stream-input`` session of its own (buffering, schedule, flush) with three
differences from the single-context socket: its first message may carry text, an empty text is
a keep-alive rather than the end, and it ends with ``close_context``. ``close_socket`` ends them
all. At most ``MAX_CONTEXTS`` are open at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict

from speechwire.protocol.errors import ProtocolError
from speechwire.protocol.tts import (
    INPUT_TIMEOUT,
    INVALID_INPUT,
    ClientTextMessage,
    Generate,
    Initialized,
    StreamInputParams,
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
    context_id: str | None = None
    close_context: bool | None = None
    close_socket: bool | None = None


class ContextSession(TTSServerSession):
    """One context: a ``stream-input`` session whose first message may carry text and whose
    empty text is a keep-alive."""

    def _initialise(self, message: ClientTextMessage) -> Initialized:
        config = message.generation_config or message.generator_config
        if config is not None and config.chunk_length_schedule is not None:
            self.schedule = tuple(config.chunk_length_schedule)
        self.voice_settings = message.voice_settings
        self.state = TTSState.STREAMING
        return Initialized(message.voice_settings, self.schedule, message.api_key, message.authorization)

    def _stream(self, message: ClientTextMessage) -> list[Any]:
        if message.text == "" and not message.flush:
            if message.voice_settings is not None and message.voice_settings != self.voice_settings:
                return super()._stream(message)  # raises the voice_settings error
            return []  # keep-alive: the clock was reset by receive_message
        if message.text == "":
            return self._generate_all(flush=True)
        return super()._stream(message)

    def first_text(self, message: ClientTextMessage) -> list[Any]:
        """Events for the text an initialising message carries."""
        if not message.text.strip() and not message.flush:
            return []
        return self._stream(message)


@dataclass(frozen=True, slots=True)
class ContextOpened:
    context_id: str
    init: Initialized


@dataclass(frozen=True, slots=True)
class ContextText:
    context_id: str
    generate: Generate


@dataclass(frozen=True, slots=True)
class ContextClosed:
    """Stop this context now: cancel its synthesis, send nothing more of it."""

    context_id: str
    reason: str = "closed"


@dataclass(frozen=True, slots=True)
class SocketClosing:
    """``close_socket``: finish what was flushed in every context, then close the socket."""


MultiEvent = ContextOpened | ContextText | ContextClosed | SocketClosing


class MultiStreamSession:
    """Routes frames to contexts; enforces the context limit and per-context inactivity."""

    def __init__(
        self,
        params: StreamInputParams,
        now: float,
        *,
        max_message_bytes: int = 1 << 20,
        max_buffer_chars: int = 100_000,
    ) -> None:
        self.params = params
        self.max_message_bytes = max_message_bytes
        self.max_buffer_chars = max_buffer_chars
        self.contexts: dict[str, ContextSession] = {}
        self.closing = False
        self._last_input = now

    @property
    def deadline(self) -> float:
        """The next moment a context (or the idle socket) times out."""
        if not self.contexts:
            return self._last_input + self.params.inactivity_timeout
        return min(c.deadline or float("inf") for c in self.contexts.values())

    def expire(self, now: float) -> list[MultiEvent]:
        """Contexts idle past ``inactivity_timeout`` close; an idle socket with none is an error."""
        events: list[MultiEvent] = []
        for cid, context in list(self.contexts.items()):
            deadline = context.deadline
            if deadline is not None and now >= deadline:
                del self.contexts[cid]
                events.append(ContextClosed(cid, "timeout"))
        if not self.contexts and not events and now >= self._last_input + self.params.inactivity_timeout:
            raise ProtocolError(
                INPUT_TIMEOUT,
                f"No message within the timeout of {self.params.inactivity_timeout:g} "
                "seconds and no open context.",
            )
        return events

    def receive(self, frame: str | bytes, now: float) -> list[MultiEvent]:
        if self.closing:
            raise ProtocolError(INVALID_INPUT, "The socket is closing (close_socket was sent).")
        message = parse_client_message(frame, self.max_message_bytes, MultiClientMessage)
        assert isinstance(message, MultiClientMessage)
        self._last_input = now
        if message.close_socket:
            self.closing = True
            return [SocketClosing()]
        cid = message.context_id or DEFAULT_CONTEXT
        context = self.contexts.get(cid)
        if message.close_context:
            if context is None:
                return []  # closing an unknown or already closed context is harmless
            del self.contexts[cid]
            return [ContextClosed(cid)]
        events: list[MultiEvent] = []
        if context is None:
            if len(self.contexts) >= MAX_CONTEXTS:
                raise ProtocolError("max_active_conversations", TOO_MANY_CONTEXTS)
            context = ContextSession(
                self.params,
                now,
                max_message_bytes=self.max_message_bytes,
                max_buffer_chars=self.max_buffer_chars,
            )
            self.contexts[cid] = context
            init = context.receive_message(message, now)[0]
            assert isinstance(init, Initialized)
            events.append(ContextOpened(cid, init))
            produced = context.first_text(message)
        else:
            produced = context.receive_message(message, now)
        events.extend(ContextText(cid, e) for e in produced if isinstance(e, Generate))
        return events


def context_audio(message: dict[str, Any], context_id: str) -> dict[str, Any]:
    """An audio frame of a context (``contextId``, camelCase, as upstream sends it)."""
    return {**message, "contextId": context_id}


def context_final(context_id: str) -> dict[str, Any]:
    """A context's final frame. Upstream is inconsistent (``isFinal`` / ``is_final``): send both."""
    return {"isFinal": True, "is_final": True, "contextId": context_id}


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))

"""The ElevenLabs streaming TTS WebSockets: ``stream-input`` and ``multi-stream-input``.

The driver (``server/ws/driver.py``) feeds frames to the sans-I/O session and hands its events to
the route's handler here; a speaker task synthesises queued text in order and sends audio. A
protocol error stops them, sends the error frame, and closes with its code; other sockets never
notice.

``multi-stream-input`` has one speaker per context. ``close_context`` (and a context's inactivity
timeout) ends its input, not its audio: the speaker voices what it was given, then sends the
context's final, as upstream does — pipecat and livekit send ``flush`` and ``close_context``
together at the end of every turn and wait for that turn's audio. Barge-in is the client's job
(it drops late audio of a context it closed); the server keeps it fast by moving a closed
context's engine jobs to the pool's background lane, so a new context's first phrase never waits
behind the old reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from speechwire.engines.registry import UnknownModel, UnknownVoice
from speechwire.engines.synthesis import SpeechPipeline
from speechwire.protocol.errors import INTERNAL_ERROR, NORMAL_CLOSURE, ProtocolError
from speechwire.protocol.multi import (
    ContextClosed,
    ContextOpened,
    ContextReinitialized,
    ContextText,
    MultiEvent,
    MultiStreamSession,
    SocketClosing,
    context_audio,
    context_final,
)
from speechwire.protocol.tts import (
    FINAL_MESSAGE,
    MODEL_NOT_FOUND,
    VOICE_NOT_FOUND,
    Generate,
    Initialized,
    InputEnded,
    StreamInputParams,
    TTSEvent,
    TTSServerSession,
    audio_message,
)
from speechwire.server.speech import options_for, pipeline_for
from speechwire.server.state import ServerState
from speechwire.server.ws.driver import EventT, Route
from speechwire.server.ws.session import serve_websocket
from speechwire.server.ws.session_socket import SessionSocket, SlowConsumer

router = APIRouter()
log = logging.getLogger("speechwire.tts")

INTERNAL = ProtocolError("internal_error", "We are sorry, something went wrong.", INTERNAL_ERROR)
CLOSE_SOCKET_WAIT_S = 60.0
"""``close_socket`` waits this long at most for every context's audio before closing."""
_END = object()
SessionT = TypeVar("SessionT", TTSServerSession, MultiStreamSession)


class _TTSRoute(Route[EventT]):
    """What both TTS sockets know at the start: the voice, its engine, the output format."""

    def __init__(self, state: ServerState, sock: SessionSocket, params: StreamInputParams) -> None:
        try:
            self.engine, self.voice = state.registry.resolve(params.voice_id, params.model_id)
        except UnknownVoice as exc:
            raise ProtocolError(VOICE_NOT_FOUND, str(exc)) from None
        except UnknownModel as exc:
            raise ProtocolError(MODEL_NOT_FOUND, str(exc)) from None
        self.state, self.sock, self.params = state, sock, params

    def pipeline(self, init: Initialized) -> SpeechPipeline:
        p = self.params
        return pipeline_for(
            self.state, self.engine, self.voice, init.voice_settings, p.output_format, p.enable_ssml_parsing
        )


def _open(
    ws: WebSocket, voice_id: str, state: ServerState, session_type: type[SessionT]
) -> tuple[SessionT, StreamInputParams]:
    params = StreamInputParams.from_query(voice_id, ws.query_params)
    settings = state.settings
    limits = {"max_message_bytes": settings.max_message_bytes, "max_buffer_chars": settings.max_buffer_chars}
    return session_type(params, time.monotonic(), **limits), params


async def _speak(
    sock: SessionSocket,
    pipeline: SpeechPipeline,
    queue: asyncio.Queue[object],
    cid: str | None = None,
    taken: Callable[[Generate], None] | None = None,
) -> bool:
    """Synthesise queued ``Generate``s (and context re-initialisations) in order until ``_END``,
    then drain the encoder. True then; False if the session ended first (client gone, slow
    consumer, or an engine failure the client was told of)."""

    def frame(audio: bytes, alignment: Any) -> dict[str, Any]:
        message = audio_message(audio, alignment)
        return message if cid is None else context_audio(message, cid)

    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, Initialized):
                pipeline.options = options_for(item.voice_settings)
                continue
            assert isinstance(item, Generate)
            if taken is not None:
                taken(item)
            async for out in pipeline.speak(item.text):
                await sock.send(frame(out.audio, out.alignment))
        tail = pipeline.finish()
        # A single-context tail without audio still carries the last characters' alignment.
        if tail is not None and (tail.audio or cid is None):
            await sock.send(frame(tail.audio, tail.alignment))
        return True
    except (WebSocketDisconnect, SlowConsumer) as exc:
        if isinstance(exc, SlowConsumer):
            log.warning("session ended: %s", exc)
        return False
    except Exception:
        log.exception("synthesis failed")
        await sock.fail(INTERNAL)
        return False


@router.websocket("/v1/text-to-speech/{voice_id}/stream-input")
async def stream_input(ws: WebSocket, voice_id: str) -> None:
    def open_session(state: ServerState, sock: SessionSocket) -> tuple[TTSServerSession, _StreamInput]:
        session, params = _open(ws, voice_id, state, TTSServerSession)
        return session, _StreamInput(state, sock, params)

    await serve_websocket(ws, "tts_websocket", lambda e: e.tts_frame(), open_session, INTERNAL)


class _StreamInput(_TTSRoute[TTSEvent]):
    """``stream-input``: start the speaker on ``Initialized``, queue each ``Generate`` for it,
    and let it finish (``isFinal``, close 1000) after ``InputEnded``."""

    def __init__(self, state: ServerState, sock: SessionSocket, params: StreamInputParams) -> None:
        super().__init__(state, sock, params)
        self.work: asyncio.Queue[object] = asyncio.Queue()
        self.queued_chars = 0  # text waiting for synthesis: bounded, so a client that never
        # reads cannot make the server hold unbounded text

    async def on_event(self, event: TTSEvent) -> None:
        if isinstance(event, Initialized):
            self.task = asyncio.create_task(self._speak(self.pipeline(event)))
        elif isinstance(event, Generate):
            self.queued_chars += len(event.text)
            limit = self.state.settings.max_buffer_chars
            if self.queued_chars > limit:
                raise ProtocolError(
                    "queue_overflow",
                    f"More than {limit} characters wait for synthesis: "
                    "read the audio you asked for before sending more text.",
                )
            self.work.put_nowait(event)
        elif isinstance(event, InputEnded):
            self.work.put_nowait(_END)
            self.reading = False  # the speaker finishes and closes

    async def _speak(self, pipeline: SpeechPipeline) -> None:
        def taken(item: Generate) -> None:
            self.queued_chars -= len(item.text)

        with contextlib.suppress(WebSocketDisconnect, SlowConsumer):
            if await _speak(self.sock, pipeline, self.work, taken=taken):
                await self.sock.send(FINAL_MESSAGE)
                await self.sock.close(NORMAL_CLOSURE)

    async def on_close(self) -> None:
        await _stop(self.task)


async def _stop(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@router.websocket("/v1/text-to-speech/{voice_id}/multi-stream-input")
async def multi_stream_input(ws: WebSocket, voice_id: str) -> None:
    def open_session(state: ServerState, sock: SessionSocket) -> tuple[MultiStreamSession, _Multi]:
        session, params = _open(ws, voice_id, state, MultiStreamSession)
        return session, _Multi(state, sock, params, session)

    await serve_websocket(ws, "tts_websocket", lambda e: e.tts_frame(), open_session, INTERNAL)


@dataclass(eq=False)
class _Context:
    cid: str
    pipeline: SpeechPipeline
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    after: asyncio.Task[None] | None = None
    """The previous context of the same id, still finishing: this one's audio waits for its
    final, so a client that drops a closed id's audio until its final loses nothing new."""

    async def speak(self, sock: SessionSocket) -> None:
        if self.after is not None:
            await asyncio.wait([self.after])
        with contextlib.suppress(WebSocketDisconnect, SlowConsumer):
            if await _speak(sock, self.pipeline, self.queue, self.cid):
                await sock.send(context_final(self.cid))


class _Multi(_TTSRoute[MultiEvent]):
    """``multi-stream-input``: a speaker per open context, and the closed contexts still
    finishing their audio (in the pool's background lane)."""

    def __init__(
        self, state: ServerState, sock: SessionSocket, params: StreamInputParams, session: MultiStreamSession
    ) -> None:
        super().__init__(state, sock, params)
        self.session = session
        self.contexts: dict[str, _Context] = {}
        self.finishing: set[_Context] = set()

    async def on_event(self, event: MultiEvent) -> None:
        if isinstance(event, ContextOpened):
            ctx = _Context(event.context_id, self.pipeline(event.init))
            ctx.after = next(
                (c.task for c in self.finishing if c.cid == ctx.cid and c.task is not None), None
            )
            ctx.task = asyncio.create_task(ctx.speak(self.sock))
            self.contexts[ctx.cid] = ctx
        elif isinstance(event, ContextText):
            self.contexts[event.context_id].queue.put_nowait(event.generate)
        elif isinstance(event, ContextReinitialized):
            self.contexts[event.context_id].queue.put_nowait(event.init)
        elif isinstance(event, ContextClosed):
            self._close_context(event.context_id)
        elif isinstance(event, SocketClosing):
            tasks = [c.task for c in self.finishing if c.task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=CLOSE_SOCKET_WAIT_S)
            await self.sock.close(NORMAL_CLOSURE)
            self.reading = False

    def _close_context(self, cid: str) -> None:
        ctx = self.contexts.pop(cid, None)
        if ctx is None or ctx.task is None:
            return
        ctx.pipeline.lane.background = True  # its client may be dropping it: others go first
        ctx.queue.put_nowait(_END)
        self.finishing.add(ctx)

        def done(_: object, ctx: _Context = ctx) -> None:
            self.finishing.discard(ctx)
            self.session.finished(ctx.cid)

        ctx.task.add_done_callback(done)

    async def on_close(self) -> None:
        for ctx in [*self.contexts.values(), *self.finishing]:
            await _stop(ctx.task)

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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from speechwire.engines.registry import UnknownModel, UnknownVoice, UnsupportedLanguage
from speechwire.engines.synthesis import SpeechPipeline
from speechwire.protocol.errors import INTERNAL_ERROR, NORMAL_CLOSURE, ProtocolError, TTSError
from speechwire.protocol.multi import (
    ContextClosed,
    ContextFailed,
    ContextOpened,
    ContextReinitialized,
    ContextText,
    MultiEvent,
    MultiStreamSession,
    SocketClosing,
    context_final,
    in_context,
)
from speechwire.protocol.tts import (
    FINAL_MESSAGE,
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

INTERNAL = ProtocolError(TTSError.INTERNAL, "We are sorry, something went wrong.", INTERNAL_ERROR)
CLOSE_SOCKET_WAIT_S = 60.0
INLINE_FRAME_BYTES = 64 << 10
"""Audio chunks larger than this (2 s of 16 kHz PCM) are base64-encoded on a thread, not the loop."""
"""``close_socket`` waits this long at most for every context's audio before closing."""
_END = object()
SessionT = TypeVar("SessionT", TTSServerSession, MultiStreamSession)
GONE = (WebSocketDisconnect, SlowConsumer)
"""What ends a speaker because the socket itself is gone: the whole session ends."""


class _Budget:
    """Characters waiting for synthesis, bounded: a client that never reads cannot make the
    server hold unbounded text (issue 14: 1,500 flushed messages to one context took 1 GiB)."""

    def __init__(self, limit: int, where: str = "") -> None:
        self.limit, self.where, self.chars = limit, where, 0

    def take(self, chars: int) -> None:
        if self.chars + chars > self.limit:
            raise ProtocolError(
                TTSError.QUEUE_OVERFLOW,
                f"More than {self.limit} characters wait for synthesis{self.where}: "
                "read the audio you asked for before sending more text.",
            )
        self.chars += chars


class _TTSRoute(Route[EventT]):
    """What both TTS sockets know at the start: the voice, its engine, the output format."""

    def __init__(self, state: ServerState, sock: SessionSocket, params: StreamInputParams) -> None:
        try:
            self.engine, self.voice = state.registry.resolve(
                params.voice_id, params.model_id, params.language_code
            )
        except UnknownVoice as exc:
            raise ProtocolError(TTSError.VOICE_NOT_FOUND, str(exc)) from None
        except UnknownModel as exc:
            raise ProtocolError(TTSError.MODEL_NOT_FOUND, str(exc)) from None
        except UnsupportedLanguage as exc:
            raise ProtocolError(TTSError.INVALID_REQUEST, str(exc)) from None
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
    taken: Callable[[Generate], None],
    cid: str | None = None,
) -> None:
    """Synthesise queued ``Generate``s (and context re-initialisations) in order until ``_END``,
    then drain the encoder. What ends it early is raised: ``GONE`` (the client left or stopped
    reading) or the engine's failure."""

    def frame(audio: bytes, alignment: Any) -> dict[str, Any]:
        message = audio_message(audio, alignment)
        return message if cid is None else in_context(message, cid)

    while (item := await queue.get()) is not _END:
        if isinstance(item, Initialized):
            pipeline.options = options_for(item.voice_settings)
            continue
        assert isinstance(item, Generate)
        taken(item)
        async for out in pipeline.speak(item.text):
            if len(out.audio) > INLINE_FRAME_BYTES:  # base64 of seconds of audio: off the loop
                await sock.send(await asyncio.to_thread(frame, out.audio, out.alignment))
            else:
                await sock.send(frame(out.audio, out.alignment))
    tail = pipeline.finish()
    # A single-context tail without audio still carries the last characters' alignment.
    if tail is not None and (tail.audio or cid is None):
        await sock.send(frame(tail.audio, tail.alignment))


def _ended(exc: BaseException) -> None:
    if isinstance(exc, SlowConsumer):
        log.warning("session ended: %s", exc)
    elif not isinstance(exc, WebSocketDisconnect):
        log.error("synthesis failed", exc_info=exc)


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
        self.budget = _Budget(state.settings.max_buffer_chars)

    async def on_event(self, event: TTSEvent) -> None:
        if isinstance(event, Initialized):
            self.task = asyncio.create_task(self._speak(self.pipeline(event)))
        elif isinstance(event, Generate):
            self.budget.take(len(event.text))
            self.work.put_nowait(event)
        elif isinstance(event, InputEnded):
            self.work.put_nowait(_END)
            self.reading = False  # the speaker finishes and closes

    async def _speak(self, pipeline: SpeechPipeline) -> None:
        def taken(item: Generate) -> None:
            self.budget.chars -= len(item.text)

        try:
            await _speak(self.sock, pipeline, self.work, taken)
            await self.sock.send(FINAL_MESSAGE)
            await self.sock.close(NORMAL_CLOSURE)
        except Exception as exc:
            _ended(exc)
            if not isinstance(exc, GONE):
                await self.sock.fail(INTERNAL)

    async def on_close(self) -> None:
        await _stop(self.task)


async def _stop(task: asyncio.Future[Any] | None) -> None:
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
    pipeline: SpeechPipeline | None  # None: it failed before it had one
    budget: _Budget
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    after: asyncio.Future[Any] | None = None
    """The previous context of the same id, still finishing: this one's audio waits for its
    final, so a client that drops a closed id's audio until its final loses nothing new."""


class _Multi(_TTSRoute[MultiEvent]):
    """``multi-stream-input``: a speaker per open context, and the closed contexts still
    finishing their audio (in the pool's background lane).

    Bounds (issue 14): each context holds at most ``max_buffer_chars`` waiting for synthesis
    (past it that context fails alone), the socket ``max_socket_queued_chars`` over all of them
    and ``max_finishing_contexts`` closed ones still being voiced (past those the socket ends).
    ``task`` ends when a speaker finds the socket gone (client left, or stopped reading): the
    driver then ends the session and everything queued is freed, instead of reading on into
    queues nobody empties.
    """

    def __init__(
        self, state: ServerState, sock: SessionSocket, params: StreamInputParams, session: MultiStreamSession
    ) -> None:
        super().__init__(state, sock, params)
        self.session = session
        self.contexts: dict[str, _Context] = {}
        self.finishing: set[_Context] = set()
        self.budget = _Budget(state.settings.max_socket_queued_chars, " on this socket")
        self.gone = asyncio.Event()

    async def on_open(self) -> None:
        self.task = asyncio.create_task(self._until_gone())

    async def _until_gone(self) -> None:
        await self.gone.wait()

    async def on_event(self, event: MultiEvent) -> None:
        if isinstance(event, ContextOpened):
            self._open_context(event)
        elif isinstance(event, ContextText) and event.context_id in self.contexts:
            await self._queue(self.contexts[event.context_id], event.generate)
        elif isinstance(event, ContextReinitialized) and event.context_id in self.contexts:
            self.contexts[event.context_id].queue.put_nowait(event.init)
        elif isinstance(event, ContextClosed):
            self._close_context(event.context_id)
        elif isinstance(event, ContextFailed):
            self._fail(event.context_id, event.error)
        elif isinstance(event, SocketClosing):
            tasks = [c.task for c in self.finishing if c.task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=CLOSE_SOCKET_WAIT_S)
            await self.sock.close(NORMAL_CLOSURE)
            self.reading = False
            self.gone.set()

    def _open_context(self, event: ContextOpened) -> None:
        if len(self.finishing) >= (most := self.state.settings.max_finishing_contexts):
            message = f"{most} closed contexts are still being voiced on this socket: read their audio first."
            raise self._socket_error(ProtocolError(TTSError.QUEUE_OVERFLOW, message))
        ctx = _Context(event.context_id, self.pipeline(event.init), self._context_budget(event.context_id))
        ctx.after = self._finishing_task(ctx.cid)
        self._start(ctx, self._voice(ctx))
        self.contexts[ctx.cid] = ctx

    async def _queue(self, ctx: _Context, item: Generate) -> None:
        """Queue text for a context's speaker within both bounds: past the context's, that
        context fails alone; past the socket's, the socket ends (the error is raised)."""
        try:
            ctx.budget.take(len(item.text))
        except ProtocolError as exc:
            for failed in self.session.fail(ctx.cid, exc):
                await self.on_event(failed)
            return
        try:
            self.budget.take(len(item.text))
        except ProtocolError as exc:
            raise self._socket_error(exc) from None
        ctx.queue.put_nowait(item)

    def _socket_error(self, error: ProtocolError) -> ProtocolError:
        """Before the driver sends an error that ends the socket: the speakers stop (one may hold
        the send lock) and the error gets a short send deadline. A client that reads takes it at
        once; one that does not must not hold the socket for ``send_timeout_s`` while the
        WebSocket layer below buffers all it still sends (70 MiB measured on loopback)."""
        for ctx in [*self.contexts.values(), *self.finishing]:
            if ctx.task is not None:
                ctx.task.cancel()
        self.sock.send_timeout_s = min(self.sock.send_timeout_s, 0.5)
        return error

    def _context_budget(self, cid: str) -> _Budget:
        return _Budget(self.state.settings.max_buffer_chars, f" in context {cid!r}")

    def _start(self, ctx: _Context, work: Coroutine[Any, Any, None]) -> None:
        task = ctx.task = asyncio.create_task(work)

        def done(_: object) -> None:
            if task is not ctx.task:
                return  # replaced: the context failed, its failure sends its final
            if self.contexts.get(ctx.cid) is ctx:  # it ended while open: its engine failed
                del self.contexts[ctx.cid]
                self.session.fail(ctx.cid, INTERNAL)
            self.finishing.discard(ctx)
            self.session.finished(ctx.cid)
            self.budget.chars -= ctx.budget.chars  # what it left unvoiced is freed with it
            ctx.budget.chars = 0

        task.add_done_callback(done)

    async def _voice(self, ctx: _Context, error: ProtocolError | None = None) -> None:
        """A context's speaker: its audio (unless it failed already), its error if it has one,
        its final. A failed engine fails this context alone; a gone socket ends the session."""

        def taken(item: Generate) -> None:
            ctx.budget.chars -= len(item.text)
            self.budget.chars -= len(item.text)

        try:
            if ctx.after is not None:
                await asyncio.wait([ctx.after])
            if error is None and ctx.pipeline is not None:
                try:
                    await _speak(self.sock, ctx.pipeline, ctx.queue, taken, ctx.cid)
                except GONE:
                    raise
                except Exception as exc:
                    _ended(exc)
                    error = INTERNAL
            if error is not None:
                await self.sock.send(in_context(error.tts_frame(), ctx.cid))
            await self.sock.send(context_final(ctx.cid))
        except GONE as exc:
            _ended(exc)
            self.gone.set()

    def _fail(self, cid: str, error: ProtocolError) -> None:
        """One context's error: its speaker stops, its queued text is freed, and the client gets
        its error and its final (after the audio of an earlier context of the same id)."""
        ctx = self.contexts.pop(cid, None)
        if ctx is None:  # its first message failed: it never had a speaker
            ctx = _Context(cid, None, self._context_budget(cid), after=self._finishing_task(cid))
        elif ctx.task is not None:
            ctx.task.cancel()
            ctx.after = asyncio.gather(*(t for t in (ctx.task, ctx.after) if t), return_exceptions=True)
        self.budget.chars -= ctx.budget.chars
        ctx.budget.chars, ctx.queue = 0, asyncio.Queue()
        self.finishing.add(ctx)
        self._start(ctx, self._voice(ctx, error))

    def _finishing_task(self, cid: str) -> asyncio.Task[None] | None:
        return next((c.task for c in self.finishing if c.cid == cid and c.task is not None), None)

    def _close_context(self, cid: str) -> None:
        ctx = self.contexts.pop(cid, None)
        if ctx is None or ctx.pipeline is None:
            return
        ctx.pipeline.lane.background = True  # its client may be dropping it: others go first
        ctx.queue.put_nowait(_END)
        self.finishing.add(ctx)

    async def on_close(self) -> None:
        for ctx in [*self.contexts.values(), *self.finishing]:
            await _stop(ctx.task)
        await _stop(self.task)

"""``/v1/text-to-speech/{voice_id}/multi-stream-input``: several TTS contexts on one socket.

One speaker task per context. ``close_context`` (and a context's inactivity timeout) ends its
input, not its audio: the speaker voices what it was given, then sends the context's final, as
upstream does — pipecat and livekit send ``flush`` and ``close_context`` together at the end of
every turn and wait for that turn's audio. Barge-in is the client's job (it drops late audio of
a context it closed); the server keeps it fast by moving a closed context's engine jobs to the
pool's background lane, so a new context's first phrase never waits behind the old reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from speechwire.protocol.errors import INTERNAL_ERROR, NORMAL_CLOSURE, ProtocolError
from speechwire.protocol.multi import (
    ContextClosed,
    ContextOpened,
    ContextReinitialized,
    ContextText,
    MultiStreamSession,
    SocketClosing,
    context_audio,
    context_final,
)
from speechwire.protocol.tts import Generate, Initialized, StreamInputParams, audio_message
from speechwire.server.session import serve_websocket
from speechwire.server.session_socket import SessionSocket, SlowConsumer
from speechwire.server.speech import SpeechPipeline, options_for, pipeline_for
from speechwire.server.state import ServerState
from speechwire.server.tts_ws import _resolve

router = APIRouter()
log = logging.getLogger("speechwire.tts.multi")

_END = object()
CLOSE_SOCKET_WAIT_S = 60.0
"""``close_socket`` waits this long at most for every context's audio before closing."""


@dataclass(eq=False)
class _Context:
    cid: str
    pipeline: SpeechPipeline
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    after: asyncio.Task[None] | None = None
    """The previous context of the same id, still finishing: this one's audio waits for its
    final, so a client that drops a closed id's audio until its final loses nothing new."""


async def _speak(sock: SessionSocket, ctx: _Context) -> None:
    """Synthesise this context's text in order; on ``_END`` drain the encoder and send the final."""
    if ctx.after is not None:
        await asyncio.wait([ctx.after])
    try:
        while True:
            item = await ctx.queue.get()
            if item is _END:
                tail = ctx.pipeline.finish()
                if tail is not None and tail.audio:
                    await sock.send(context_audio(audio_message(tail.audio, tail.alignment), ctx.cid))
                await sock.send(context_final(ctx.cid))
                return
            if isinstance(item, Initialized):
                ctx.pipeline.options = options_for(item.voice_settings)
                continue
            assert isinstance(item, Generate)
            async for out in ctx.pipeline.speak(item.text):
                await sock.send(context_audio(audio_message(out.audio, out.alignment), ctx.cid))
    except (WebSocketDisconnect, SlowConsumer):
        return
    except Exception:
        log.exception("context %s: synthesis failed", ctx.cid)
        await sock.fail(
            ProtocolError("internal_error", "We are sorry, something went wrong.", INTERNAL_ERROR)
        )


async def _stop(ctx: _Context) -> None:
    if ctx.task is not None and not ctx.task.done():
        ctx.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await ctx.task


@router.websocket("/v1/text-to-speech/{voice_id}/multi-stream-input")
async def multi_stream_input(ws: WebSocket, voice_id: str) -> None:
    await serve_websocket(
        ws, "tts_websocket", lambda e: e.tts_frame(), lambda state, sock: _serve(ws, voice_id, state, sock)
    )


async def _serve(ws: WebSocket, voice_id: str, state: ServerState, sock: SessionSocket) -> None:
    sid = uuid.uuid4().hex[:12]
    settings = state.settings
    try:
        params = StreamInputParams.from_query(voice_id, ws.query_params)
        engine, voice = _resolve(state, params)
    except ProtocolError as exc:
        await sock.fail(exc)
        return
    session = MultiStreamSession(
        params,
        time.monotonic(),
        max_message_bytes=settings.max_message_bytes,
        max_buffer_chars=settings.max_buffer_chars,
    )
    contexts: dict[str, _Context] = {}
    finishing: set[_Context] = set()

    def open_context(cid: str, init: Initialized) -> None:
        pipeline = pipeline_for(
            state, engine, voice, init.voice_settings, params.output_format, params.enable_ssml_parsing
        )
        ctx = _Context(cid, pipeline)
        ctx.after = next((c.task for c in finishing if c.cid == cid and c.task is not None), None)
        ctx.task = asyncio.create_task(_speak(sock, ctx))
        contexts[cid] = ctx

    def close_context(cid: str) -> None:
        ctx = contexts.pop(cid, None)
        if ctx is None or ctx.task is None:
            return
        ctx.pipeline.lane.background = True  # its client may be dropping it: others go first
        ctx.queue.put_nowait(_END)
        finishing.add(ctx)

        def done(_: object, ctx: _Context = ctx) -> None:
            finishing.discard(ctx)
            session.finished(ctx.cid)

        ctx.task.add_done_callback(done)

    try:
        while True:
            timeout = max(0.0, session.deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(ws.receive(), timeout=timeout)
            except TimeoutError:
                for event in session.expire(time.monotonic()):
                    if isinstance(event, ContextClosed):
                        close_context(event.context_id)
                continue
            if message["type"] == "websocket.disconnect":
                return
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            for event in session.receive(frame, time.monotonic()):
                if isinstance(event, ContextOpened):
                    open_context(event.context_id, event.init)
                elif isinstance(event, ContextText):
                    contexts[event.context_id].queue.put_nowait(event.generate)
                elif isinstance(event, ContextReinitialized):
                    contexts[event.context_id].queue.put_nowait(event.init)
                elif isinstance(event, ContextClosed):
                    close_context(event.context_id)
                elif isinstance(event, SocketClosing):
                    tasks = [c.task for c in finishing if c.task is not None]
                    if tasks:
                        await asyncio.wait(tasks, timeout=CLOSE_SOCKET_WAIT_S)
                    await sock.close(NORMAL_CLOSURE)
                    return
    except ProtocolError as exc:
        log.info("multi session %s closed on %s: %s", sid, exc.error, exc.message)
        await sock.fail(exc)
    except (WebSocketDisconnect, SlowConsumer):
        pass
    finally:
        for ctx in [*contexts.values(), *finishing]:
            await _stop(ctx)

"""``/v1/text-to-speech/{voice_id}/multi-stream-input``: several TTS contexts on one socket.

One speaker task per context. Closing a context cancels its task and waits for it before the
next frame is read, so once a close is processed no audio of that context is sent, and its
queued engine jobs are skipped by the pool (the CPU goes to the next context). The close is
acknowledged with the context's final frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from speechwire.protocol.errors import NORMAL_CLOSURE, ProtocolError
from speechwire.protocol.multi import (
    ContextClosed,
    ContextOpened,
    ContextText,
    MultiStreamSession,
    SocketClosing,
    context_audio,
    context_final,
)
from speechwire.protocol.tts import Generate, StreamInputParams, audio_message
from speechwire.server.session import serve_websocket
from speechwire.server.session_socket import SessionSocket, SlowConsumer
from speechwire.server.speech import SpeechPipeline, pipeline_for
from speechwire.server.state import ServerState
from speechwire.server.tts_ws import _resolve

router = APIRouter()
log = logging.getLogger("speechwire.tts.multi")

_END = object()


@dataclass
class _Context:
    pipeline: SpeechPipeline
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


async def _speak(sock: SessionSocket, cid: str, ctx: _Context) -> None:
    """Synthesise this context's text in order; on ``_END`` drain the encoder and stop."""
    while True:
        item = await ctx.queue.get()
        if item is _END:
            tail = ctx.pipeline.finish()
            if tail is not None and tail.audio:
                await sock.send(context_audio(audio_message(tail.audio, tail.alignment), cid))
            return
        assert isinstance(item, Generate)
        async for out in ctx.pipeline.speak(item.text):
            await sock.send(context_audio(audio_message(out.audio, out.alignment), cid))


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

    async def close_context(cid: str) -> None:
        ctx = contexts.pop(cid, None)
        if ctx is not None:
            await _stop(ctx)
            await sock.send(context_final(cid))

    try:
        while True:
            timeout = max(0.0, session.deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(ws.receive(), timeout=timeout)
            except TimeoutError:
                for event in session.expire(time.monotonic()):
                    if isinstance(event, ContextClosed):
                        await close_context(event.context_id)
                continue
            if message["type"] == "websocket.disconnect":
                return
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            for event in session.receive(frame, time.monotonic()):
                if isinstance(event, ContextOpened):
                    pipeline = pipeline_for(
                        state, engine, voice, event.init.voice_settings, params.output_format
                    )
                    ctx = _Context(pipeline)
                    ctx.task = asyncio.create_task(_speak(sock, event.context_id, ctx))
                    contexts[event.context_id] = ctx
                elif isinstance(event, ContextText):
                    contexts[event.context_id].queue.put_nowait(event.generate)
                elif isinstance(event, ContextClosed):
                    await close_context(event.context_id)
                elif isinstance(event, SocketClosing):
                    await _close_socket(sock, contexts)
                    return
    except ProtocolError as exc:
        log.info("multi session %s closed on %s: %s", sid, exc.error, exc.message)
        await sock.fail(exc)
    except (WebSocketDisconnect, SlowConsumer):
        pass
    finally:
        for ctx in contexts.values():
            await _stop(ctx)


async def _close_socket(sock: SessionSocket, contexts: dict[str, _Context]) -> None:
    """``close_socket``: every context finishes what it was asked to say, then close 1000."""
    for ctx in contexts.values():
        ctx.queue.put_nowait(_END)
    tasks: list[Any] = [c.task for c in contexts.values() if c.task is not None]
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    for cid in list(contexts):
        await sock.send(context_final(cid))
    contexts.clear()
    await sock.close(NORMAL_CLOSURE)

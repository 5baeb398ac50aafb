"""``/v1/text-to-speech/{voice_id}/stream-input``: the ElevenLabs streaming TTS WebSocket.

Two tasks per socket: the reader feeds frames to the sans-I/O ``TTSServerSession`` and queues
what it says to generate; the speaker synthesises in order and sends audio. A protocol error
stops both, sends the error frame, and closes with its code; other sockets never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from speechwire.engines.registry import UnknownModel, UnknownVoice
from speechwire.protocol.errors import INTERNAL_ERROR, NORMAL_CLOSURE, ProtocolError
from speechwire.protocol.tts import (
    FINAL_MESSAGE,
    MODEL_NOT_FOUND,
    VOICE_NOT_FOUND,
    Generate,
    Initialized,
    InputEnded,
    StreamInputParams,
    TTSServerSession,
    audio_message,
)
from speechwire.server.session import serve_websocket
from speechwire.server.session_socket import SessionSocket, SlowConsumer
from speechwire.server.speech import SpeechPipeline, pipeline_for
from speechwire.server.state import ServerState

router = APIRouter()
log = logging.getLogger("speechwire.tts")

_END = object()


def _resolve(state: ServerState, params: StreamInputParams) -> tuple[Any, Any]:
    try:
        return state.registry.resolve(params.voice_id, params.model_id)
    except UnknownVoice as exc:
        raise ProtocolError(VOICE_NOT_FOUND, str(exc)) from None
    except UnknownModel as exc:
        raise ProtocolError(MODEL_NOT_FOUND, str(exc)) from None


@router.websocket("/v1/text-to-speech/{voice_id}/stream-input")
async def stream_input(ws: WebSocket, voice_id: str) -> None:
    await serve_websocket(
        ws,
        "tts_websocket",
        lambda e: e.tts_frame(),
        lambda state, sock: _stream_input(ws, voice_id, state, sock),
    )


async def _stream_input(ws: WebSocket, voice_id: str, state: ServerState, sock: SessionSocket) -> None:
    sid = uuid.uuid4().hex[:12]
    try:
        params = StreamInputParams.from_query(voice_id, ws.query_params)
        engine, voice = _resolve(state, params)
    except ProtocolError as exc:
        log.info("session %s rejected: %s", sid, exc.error)
        await sock.fail(exc)
        return
    settings = state.settings
    session = TTSServerSession(
        params,
        time.monotonic(),
        max_message_bytes=settings.max_message_bytes,
        max_buffer_chars=settings.max_buffer_chars,
    )
    work: asyncio.Queue[object] = asyncio.Queue()
    queued_chars = [0]  # text waiting for synthesis: bounded, so a client that never reads
    speaker: asyncio.Task[None] | None = None  # cannot make the server hold unbounded text
    receiver: asyncio.Task[Any] | None = None
    try:
        while True:
            deadline = session.deadline
            if deadline is None:
                break  # input ended: the speaker finishes and closes
            receiver = receiver or asyncio.ensure_future(ws.receive())
            waiting: set[asyncio.Future[Any]] = {receiver} if speaker is None else {receiver, speaker}
            done, _ = await asyncio.wait(
                waiting, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
            )
            if speaker is not None and speaker in done:
                return  # the speaker ended the session (slow consumer, engine failure)
            if receiver not in done:
                session.check_timeout(time.monotonic())
                continue
            message, receiver = receiver.result(), None
            if message["type"] == "websocket.disconnect":
                return
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            for event in session.receive(frame, time.monotonic()):
                if isinstance(event, Initialized):
                    pipeline = pipeline_for(
                        state,
                        engine,
                        voice,
                        event.voice_settings,
                        params.output_format,
                        params.enable_ssml_parsing,
                    )
                    speaker = asyncio.create_task(_speak(sock, pipeline, work, sid, queued_chars))
                elif isinstance(event, Generate):
                    queued_chars[0] += len(event.text)
                    if queued_chars[0] > settings.max_buffer_chars:
                        raise ProtocolError(
                            "queue_overflow",
                            f"More than {settings.max_buffer_chars} characters wait for synthesis: "
                            "read the audio you asked for before sending more text.",
                        )
                    work.put_nowait(event)
                elif isinstance(event, InputEnded):
                    work.put_nowait(_END)
        if speaker is not None:
            await speaker
    except ProtocolError as exc:
        log.info("session %s closed on %s: %s", sid, exc.error, exc.message)
        if speaker is not None:
            speaker.cancel()
        await sock.fail(exc)
    except WebSocketDisconnect:
        pass
    finally:
        for task in (receiver, speaker):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _speak(
    sock: SessionSocket,
    pipeline: SpeechPipeline,
    work: asyncio.Queue[object],
    sid: str,
    queued_chars: list[int],
) -> None:
    """Synthesise queued text in order; after end of input send ``isFinal`` and close 1000."""
    try:
        while True:
            item = await work.get()
            if item is _END:
                tail = pipeline.finish()
                if tail is not None:
                    await sock.send(audio_message(tail.audio, tail.alignment))
                await sock.send(FINAL_MESSAGE)
                await sock.close(NORMAL_CLOSURE)
                return
            assert isinstance(item, Generate)
            queued_chars[0] -= len(item.text)
            async for out in pipeline.speak(item.text):
                await sock.send(audio_message(out.audio, out.alignment))
    except asyncio.CancelledError:
        raise
    except WebSocketDisconnect:
        return
    except SlowConsumer as exc:
        log.warning("session %s ended: %s", sid, exc)
        return
    except Exception:
        log.exception("session %s: synthesis failed", sid)
        await sock.fail(
            ProtocolError("internal_error", "We are sorry, something went wrong.", INTERNAL_ERROR)
        )

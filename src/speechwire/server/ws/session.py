"""What every WebSocket route does around its session: who may connect, whether there is room,
where the session runs (local engines or the cloud), and for how long at most."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket

from speechwire.protocol.errors import POLICY_VIOLATION, TRY_AGAIN_LATER, ProtocolError
from speechwire.protocol.session import ServerSession
from speechwire.server.access.auth import as_stt_error, authorise
from speechwire.server.access.tokens import TokenType
from speechwire.server.ops.logs import SESSION_ID
from speechwire.server.relay import relay_websocket, relays
from speechwire.server.state import ServerState, server_state
from speechwire.server.ws.driver import EventT, Route, drive
from speechwire.server.ws.session_socket import SessionSocket

log = logging.getLogger("speechwire.session")

SERVER_FULL = "The server is at its session limit; try again shortly."

SESSION_TIME_LIMIT = "session_time_limit_exceeded"


async def serve_websocket(
    ws: WebSocket,
    kind: TokenType,
    error_frame: Callable[[ProtocolError], dict[str, Any]],
    open_session: Callable[[ServerState, SessionSocket], tuple[ServerSession[EventT], Route[EventT]]],
    internal_error: ProtocolError,
) -> None:
    """Every WebSocket route: accept, authorise, admit, then run the session for at most
    ``max_session_s`` — locally (``drive`` with the route's ``open_session``; ``internal_error``
    if its handler fails) or relayed to the same path in the cloud (our routes are upstream's
    routes, so the request's path is the upstream path)."""
    state = server_state(ws.app)
    await ws.accept()
    sock = SessionSocket(ws, error_frame, state.settings.send_timeout_s)
    stt = kind == "realtime_scribe"
    relayed = relays(state, ws.query_params.get("model_id"), stt)
    name = "stt" if stt else ("tts_multi" if ws.url.path.endswith("multi-stream-input") else "tts")
    metrics = state.metrics
    SESSION_ID.set(uuid.uuid4().hex[:12])
    async with authorise(ws, state, kind) as refused:
        if refused is not None:
            log.info("%s connection refused: %s", name, refused.error)
            metrics.refused.labels(name, refused.error).inc()
            await sock.fail(as_stt_error(refused) if stt else refused)
            return
        with state.admitted(sock, "stt" if stt else "tts", local=not relayed) as admitted:
            if not admitted:
                metrics.refused.labels(name, "resource_exhausted").inc()
                await sock.fail(ProtocolError("resource_exhausted", SERVER_FULL, TRY_AGAIN_LATER))
                return
            sock.on_fail = lambda error: metrics.errors.labels(name, error.error).inc()
            metrics.sessions.labels(name, "elevenlabs" if relayed else "local").inc()
            metrics.sessions_open.labels(name).inc()
            limit = state.settings.max_session_s
            timer = asyncio.timeout(limit)
            try:
                async with timer:
                    if relayed:
                        await relay_websocket(ws, state, sock, stt)
                    else:
                        await drive(sock, lambda: open_session(state, sock), internal_error)
            except TimeoutError:
                if not timer.expired():
                    raise
                message = f"Sessions last at most {limit:g} seconds."
                await sock.fail(ProtocolError(SESSION_TIME_LIMIT, message, POLICY_VIOLATION))
            finally:
                metrics.sessions_open.labels(name).dec()

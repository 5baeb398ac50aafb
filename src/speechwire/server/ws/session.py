"""What every WebSocket route does around its session: who may connect, whether there is room,
where the session runs (local engines or the cloud), and for how long at most."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket

from speechwire.protocol.errors import POLICY_VIOLATION, TRY_AGAIN_LATER, ProtocolError
from speechwire.protocol.session import ServerSession
from speechwire.server.access.auth import as_stt_error, authorise, limited, presented_key
from speechwire.server.access.tokens import TokenType
from speechwire.server.ops.logs import SESSION_ID
from speechwire.server.relay import relay_websocket, relays
from speechwire.server.state import ServerState, server_state
from speechwire.server.ws.driver import EventT, ReadPacer, Route, drive
from speechwire.server.ws.session_socket import SessionSocket

log = logging.getLogger("speechwire.session")

TOO_MANY_UNAUTHENTICATED = (
    "Too many connections from this address are still authenticating; send the key with the "
    "request (xi-api-key header) or try again shortly."
)

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

    async def refuse(error: ProtocolError, why: str, reason: str | None = None) -> None:
        log.info("%s %s", name, why)
        metrics.refused.labels(name, reason or error.error).inc()
        await sock.fail(error)

    address = ws.client.host if ws.client else "unknown"
    # Only a socket that presents nothing in its request can make us wait (for the TTS
    # first-message key, up to 10 s); one with a header key or a token is judged at once.
    query = ws.query_params
    presents = presented_key(ws) is not None or "token" in query or "single_use_token" in query
    waits = bool(state.settings.api_keys) and not presents
    async with contextlib.AsyncExitStack() as held:
        waiting = state.authenticating(address) if waits else lambda: None
        if waiting is None:
            error = ProtocolError("rate_limited", TOO_MANY_UNAUTHENTICATED, TRY_AGAIN_LATER)
            why = f"connection refused: too many unauthenticated connections from {address}"
            return await refuse(error, why, "unauthenticated_limit")
        held.callback(waiting)
        caller = await held.enter_async_context(authorise(ws, state, kind))
        waiting()
        if isinstance(caller, ProtocolError):
            why = f"connection refused: {caller.error}"
            return await refuse(as_stt_error(caller) if stt else caller, why, caller.error)
        key = caller if limited(caller) else None
        refusal = held.enter_context(state.admitted(sock, "stt" if stt else "tts", not relayed, key))
        if refusal is not None:
            why = f"session refused: {refusal.error} ({refusal.message}; {_load(state)})"
            return await refuse(ProtocolError(refusal.error, refusal.message, TRY_AGAIN_LATER), why)
        sock.on_fail = lambda error: metrics.errors.labels(name, error.error).inc()
        metrics.sessions.labels(name, "elevenlabs" if relayed else "local").inc()
        metrics.sessions_open.labels(name).inc()
        timer = asyncio.timeout(state.settings.max_session_s)
        try:
            async with timer:
                if relayed:
                    await relay_websocket(ws, state, sock, stt)
                else:
                    pacer = ReadPacer(
                        state.settings.max_read_bytes_per_s, 4 * state.settings.max_message_bytes
                    )
                    await drive(sock, lambda: open_session(state, sock), internal_error, pacer)
        except TimeoutError:
            if not timer.expired():
                raise
            message = f"Sessions last at most {state.settings.max_session_s:g} seconds."
            await sock.fail(ProtocolError(SESSION_TIME_LIMIT, message, POLICY_VIOLATION))
        finally:
            metrics.sessions_open.labels(name).dec()


def _load(state: ServerState) -> str:
    """What the server holds when it refuses someone: enough for an operator to tell "full"
    from "one key took its share" without a metrics dashboard."""
    engines = ", ".join(f"{kind} {state.open[kind]}" for kind in ("stt", "tts") if state.open[kind]) or "none"
    return f"{len(state.sockets)} WebSocket and {state.open['http']} HTTP sessions open; engines: {engines}"

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
from speechwire.server.access.auth import as_stt_error, authorise, presented_key
from speechwire.server.access.limits import SESSION_CALLER
from speechwire.server.access.tokens import TokenType
from speechwire.server.ops.logs import SESSION_ID
from speechwire.server.relay import relay_websocket, relays
from speechwire.server.state import ServerState, server_state
from speechwire.server.ws.driver import EventT, Route, drive
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
    SESSION_CALLER.set(None)
    address = ws.client.host if ws.client else "unknown"
    # Only a socket that presents nothing in its request can make us wait (for the TTS
    # first-message key, up to 10 s); one with a header key or a token is judged at once.
    waits = bool(state.settings.api_keys) and not _presents_credential(ws)
    with state.authenticating(address if waits else None) as authenticated:
        if authenticated is None:
            log.info("%s connection refused: too many unauthenticated connections from %s", name, address)
            metrics.refused.labels(name, "unauthenticated_limit").inc()
            await sock.fail(ProtocolError("rate_limited", TOO_MANY_UNAUTHENTICATED, TRY_AGAIN_LATER))
            return
        async with authorise(ws, state, kind) as refused:
            authenticated()
            if refused is not None:
                log.info("%s connection refused: %s", name, refused.error)
                metrics.refused.labels(name, refused.error).inc()
                await sock.fail(as_stt_error(refused) if stt else refused)
                return
            caller = SESSION_CALLER.get()
            engine = "stt" if stt else "tts"
            with state.admitted(sock, engine, local=not relayed, caller=caller) as refusal:
                if refusal is not None:
                    log.info(
                        "%s session refused: %s (%s; %s)", name, refusal.error, refusal.message, _load(state)
                    )
                    metrics.refused.labels(name, refusal.error).inc()
                    await sock.fail(ProtocolError(refusal.error, refusal.message, TRY_AGAIN_LATER))
                    return
                await _run(ws, state, sock, name, relayed, stt, open_session, internal_error)


def _presents_credential(ws: WebSocket) -> bool:
    query = ws.query_params
    return presented_key(ws) is not None or "token" in query or "single_use_token" in query


def _load(state: ServerState) -> str:
    """What the server holds when it refuses someone: enough for an operator to tell "full"
    from "one key took its share" without a metrics dashboard."""
    engines = ", ".join(f"{kind} {n}" for kind, n in sorted(state.engine_sessions.items())) or "none"
    return f"{len(state.sockets)} WebSocket and {state.http_sessions} HTTP sessions open; engines: {engines}"


async def _run(
    ws: WebSocket,
    state: ServerState,
    sock: SessionSocket,
    name: str,
    relayed: bool,
    stt: bool,
    open_session: Callable[[ServerState, SessionSocket], tuple[ServerSession[EventT], Route[EventT]]],
    internal_error: ProtocolError,
) -> None:
    """An admitted session, for at most ``max_session_s``."""
    metrics = state.metrics
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

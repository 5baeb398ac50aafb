"""Who may open a session: server API keys for programs, single-use tokens for browsers.

Order of checks for a WebSocket, each refusal in the protocol's own error shape:
1. a token in the query (``single_use_token`` as the TTS protocol names it, ``token`` as Scribe
   does; either works on every route) must be live and unused, whatever else is configured. A
   token minted with an API key (an app's backend holds the key) is itself the authorisation,
   as upstream: it is accepted from any ``Origin`` — that is how a page on the app's own origin
   uses ``@elevenlabs/client``. A token minted without a key (a key-less dev server, or the demo
   page with ``page_tokens``) proves nothing about the page, so its socket still passes 2;
2. a browser's ``Origin`` must be the server's own (at a name it answers to: not a DNS-rebinding
   page's) or in ``allowed_origins`` (a page elsewhere must not borrow a user's network position
   or cookies, nor a dev server's open door);
3. otherwise, with API keys configured: the ``xi-api-key`` header, ``authorization: Bearer``,
   or, on TTS routes, ``xi_api_key`` / ``xi-api-key`` / ``authorization`` in the first message;
4. the caller (the key, the key that minted the token, or the client address on a dev server)
   must be within its rate limit.

A page-minted token presented from a refused Origin is used up by the attempt (it is consumed
before its owner is known); such a token could only have come from that page anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, WebSocket
from starlette.requests import HTTPConnection

from speechwire.protocol.errors import POLICY_VIOLATION, TRY_AGAIN_LATER, ProtocolError
from speechwire.server.access.hosts import host_allowed
from speechwire.server.access.tokens import TOKEN_TYPES, TokenType
from speechwire.server.state import ServerState, server_state

router = APIRouter()

INVALID_API_KEY = "invalid_api_key"
AUTHENTICATION_REQUIRED = "authentication_required"
RATE_LIMITED = "rate_limited"
ORIGIN_NOT_ALLOWED = "origin_not_allowed"
INVALID_TOKEN_MESSAGE = "Invalid or expired single-use token (a token works once, for 15 minutes)."
MISSING_MESSAGE = (
    "None of the authentication methods (xi-api-key, authorization header, single-use token) were found."
)
FIRST_MESSAGE_TIMEOUT_S = 10.0


def caller_id(key: str) -> str:
    """A stable, non-secret name for a key (for limits and logs)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return value or None


def presented_key(conn: HTTPConnection) -> str | None:
    return conn.headers.get("xi-api-key") or _bearer(conn.headers.get("authorization"))


def key_is_valid(state: ServerState, key: str | None) -> bool:
    """Constant-time comparison against every configured key."""
    if not key:
        return False
    try:
        presented = key.encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800", valid JSON): no key has one
        return False
    return any(hmac.compare_digest(presented, k.get_secret_value().encode()) for k in state.settings.api_keys)


def origin_allowed(conn: HTTPConnection, state: ServerState) -> bool:
    origin = conn.headers.get("origin")
    if origin is None:
        return True  # not a browser: nothing to protect against here
    allowed = state.settings.allowed_origins
    if "*" in allowed or origin in allowed:
        return True
    host = conn.headers.get("host", "")
    # The page this server serves itself, at a name it answers to: a DNS-rebinding page is its
    # own origin too, on a name that is not this server's (``access.hosts``).
    return urlsplit(origin).netloc == host and host_allowed(host, state.settings.allowed_hosts)


FORWARDED_HEADERS = (b"x-forwarded-for", b"forwarded")


def client_address(conn: HTTPConnection, state: ServerState) -> str:
    """The address a key-less caller's budget is counted against. ``X-Forwarded-For`` is whatever
    the client wrote unless a proxy of ours wrote it, so it is believed only from
    ``trusted_proxies`` (``server.app`` adds uvicorn's ``ProxyHeadersMiddleware``, which puts it in
    ``conn.client``); without any, every request that names one shares a single budget, so
    writing a fresh ``X-Forwarded-For`` each time buys nothing, whoever rewrote ``conn.client``."""
    if not state.settings.trusted_proxies and any(
        name in FORWARDED_HEADERS for name, _ in conn.scope.get("headers", [])
    ):
        return "forwarded"
    return conn.client.host if conn.client else "unknown"


def _key_from_first_message(frame: str | bytes | None, limit: int) -> str | None:
    """The key in the TTS first message. Past ``limit`` (``max_preauth_message_bytes``) the frame
    is not parsed at all: the transport already refuses bigger frames under our uvicorn config,
    and this keeps an app served any other way from JSON-parsing megabytes for a stranger."""
    if not isinstance(frame, str) or len(frame) > limit:
        return None
    try:
        data = json.loads(frame)
    except (json.JSONDecodeError, RecursionError):
        return None
    names = ("xi_api_key", "xi-api-key", "authorization")
    values = [data.get(name) for name in names] if isinstance(data, dict) else []
    return next((_bearer(value) for value in values if isinstance(value, str) and value), None)


async def _identify(ws: WebSocket, state: ServerState, kind: TokenType) -> str | ProtocolError:
    """The caller's name, or why it is refused."""
    refused = ProtocolError(ORIGIN_NOT_ALLOWED, "This Origin may not open sessions here.", POLICY_VIOLATION)
    token = ws.query_params.get("single_use_token") or ws.query_params.get("token")
    if token is not None:
        owner = await state.tokens.consume(token, kind)
        if owner is None:
            return ProtocolError(INVALID_API_KEY, INVALID_TOKEN_MESSAGE, POLICY_VIOLATION)
        if not owner.startswith("key:") and not origin_allowed(ws, state):  # not minted with a key
            return refused
        return owner
    if not origin_allowed(ws, state):
        return refused
    if not state.settings.api_keys:
        return "ip:" + client_address(ws, state)
    key = presented_key(ws)
    if key is None and kind == "tts_websocket":
        # The TTS protocol also carries the key in the first message.
        try:
            message = await asyncio.wait_for(ws.receive(), FIRST_MESSAGE_TIMEOUT_S)
        except TimeoutError:
            return ProtocolError(AUTHENTICATION_REQUIRED, MISSING_MESSAGE, POLICY_VIOLATION)
        receive = ws.receive

        async def replay() -> Any:  # the session must still see the frame auth had to read
            ws.receive = receive  # type: ignore[method-assign]
            return message

        ws.receive = replay  # type: ignore[method-assign]
        key = _key_from_first_message(message.get("text"), state.settings.max_preauth_message_bytes)
    if key is None:
        return ProtocolError(AUTHENTICATION_REQUIRED, MISSING_MESSAGE, POLICY_VIOLATION)
    if not key_is_valid(state, key):
        return ProtocolError(INVALID_API_KEY, "Invalid API key", POLICY_VIOLATION)
    return caller_id(key)


@contextlib.asynccontextmanager
async def authorise(ws: WebSocket, state: ServerState, kind: TokenType) -> AsyncIterator[str | ProtocolError]:
    """Yields why this connection is refused, or the caller's name while it holds its session slot."""
    caller = await _identify(ws, state, kind)
    if isinstance(caller, ProtocolError) or not limited(caller):
        yield caller
        return
    reason = await state.limiter.acquire(caller)
    if reason is not None:
        yield ProtocolError(RATE_LIMITED, reason, TRY_AGAIN_LATER)
        return
    try:
        yield caller
    finally:
        await state.limiter.release(caller)


def as_stt_error(error: ProtocolError) -> ProtocolError:
    """Scribe's spelling: every credential problem is ``auth_error``."""
    if error.error in (INVALID_API_KEY, AUTHENTICATION_REQUIRED, ORIGIN_NOT_ALLOWED):
        return ProtocolError("auth_error", error.message, error.code)
    return error


def require_key(request: Request) -> str:
    """HTTP routes: the caller's name, or 401 in the HTTP API's error shape."""
    state = server_state(request.app)
    if not state.settings.api_keys:
        return "ip:" + client_address(request, state)
    key = presented_key(request)
    if not key_is_valid(state, key):
        status = INVALID_API_KEY if key else AUTHENTICATION_REQUIRED
        raise HTTPException(401, {"status": status, "message": "A valid xi-api-key is required."})
    assert key is not None
    return caller_id(key)


def limited(caller: str) -> bool:
    """Keys have budgets; a dev server's callers (all on loopback) share only the server's cap."""
    return not caller.startswith("ip:")


async def check_rate(request: Request, caller: str) -> None:
    """HTTP routes count against the same per-caller budget of new sessions."""
    if not limited(caller):
        return
    state = server_state(request.app)
    reason = await state.limiter.acquire(caller)
    if reason is not None:
        raise HTTPException(429, {"status": RATE_LIMITED, "message": reason})
    await state.limiter.release(caller)


async def http_caller(request: Request) -> str:
    """Dependency of the HTTP speech routes: a valid key (when keys are set) and within its rate."""
    caller = require_key(request)
    await check_rate(request, caller)
    return caller


@router.post("/v1/single-use-token/{token_type}")
async def single_use_token(token_type: str, request: Request) -> dict[str, Any]:
    """Mint a single-use token (15 minutes) for a caller that holds a key; on a dev server, or
    for the demo page with ``page_tokens``, for anyone the origin rules admit."""
    state = server_state(request.app)
    if token_type not in TOKEN_TYPES:
        raise HTTPException(422, f"token_type must be one of {', '.join(TOKEN_TYPES)}")
    origin = request.headers.get("origin")
    if not origin_allowed(request, state):
        raise HTTPException(
            403, {"status": ORIGIN_NOT_ALLOWED, "message": "This Origin may not mint tokens."}
        )
    settings = state.settings
    if settings.api_keys and settings.page_tokens and origin is not None and presented_key(request) is None:
        owner = "page:" + client_address(request, state)
    else:
        owner = require_key(request)
    await check_rate(request, owner)
    return {"token": await state.tokens.mint(token_type, owner)}  # type: ignore[arg-type]

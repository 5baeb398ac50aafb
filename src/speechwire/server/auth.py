"""Who may open a session: server API keys for programs, single-use tokens for browsers.

A WebSocket is checked before its session starts: a token in the query (``single_use_token`` as
the TTS protocol names it, ``token`` as Scribe does; either works on every route) must be live
and unused, whatever else is configured. When the server has API keys, a connection also needs
one of them (``xi-api-key`` header or ``authorization: Bearer``) or such a token. A server
without keys is a development server and admits everyone.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.requests import HTTPConnection

from speechwire.protocol.errors import POLICY_VIOLATION, ProtocolError
from speechwire.server.state import ServerState, server_state
from speechwire.server.tokens import TOKEN_TYPES, TokenType

router = APIRouter()

INVALID_API_KEY = "invalid_api_key"
AUTHENTICATION_REQUIRED = "authentication_required"
INVALID_TOKEN_MESSAGE = "Invalid or expired single-use token (a token works once, for 15 minutes)."
MISSING_MESSAGE = (
    "None of the authentication methods (xi-api-key, authorization header, single-use token) were found."
)


def _presented_key(conn: HTTPConnection) -> str | None:
    key = conn.headers.get("xi-api-key")
    if key:
        return key
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def key_is_valid(state: ServerState, key: str | None) -> bool:
    """Constant-time comparison against every configured key."""
    if not key:
        return False
    return any(
        hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in state.settings.api_keys
    )


def check_connection(conn: HTTPConnection, state: ServerState, kind: TokenType) -> ProtocolError | None:
    """The reason to refuse this connection, or None to admit it."""
    token = conn.query_params.get("single_use_token") or conn.query_params.get("token")
    if token is not None:
        if state.tokens.consume(token, kind):
            return None
        return ProtocolError(INVALID_API_KEY, INVALID_TOKEN_MESSAGE, POLICY_VIOLATION)
    if not state.settings.api_keys:
        return None
    key = _presented_key(conn)
    if key is None:
        return ProtocolError(AUTHENTICATION_REQUIRED, MISSING_MESSAGE, POLICY_VIOLATION)
    if not key_is_valid(state, key):
        return ProtocolError(INVALID_API_KEY, "Invalid API key", POLICY_VIOLATION)
    return None


@router.post("/v1/single-use-token/{token_type}")
async def single_use_token(token_type: str, request: Request) -> dict[str, Any]:
    """Mint a 15-minute, single-use token, for a caller that holds a key (anyone on a server
    without keys)."""
    state = server_state(request.app)
    if token_type not in TOKEN_TYPES:
        raise HTTPException(422, f"token_type must be one of {', '.join(TOKEN_TYPES)}")
    if state.settings.api_keys and not key_is_valid(state, _presented_key(request)):
        raise HTTPException(401, {"status": INVALID_API_KEY, "message": "A valid xi-api-key is required."})
    return {"token": state.tokens.mint(token_type)}  # type: ignore[arg-type]

"""The relay to the ElevenLabs cloud, as routes see it: which requests and sessions go to the
cloud, the WebSocket relay of a whole session (our client as a ``FramePeer``), the HTTP relay of
one request, and how a refusal upstream reaches our client (a refused server credential is the
server's failure: 1011 / 502, never the client's ``invalid_api_key``). The cloud client itself (connecting,
pumping frames, the key) is ``engines/elevenlabs.py``."""

from __future__ import annotations

import contextlib
import logging

from fastapi import WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from speechwire.engines.elevenlabs import UpstreamRefused
from speechwire.protocol.errors import INTERNAL_ERROR, TRY_AGAIN_LATER, ProtocolError
from speechwire.server.state import ServerState
from speechwire.server.ws.session_socket import SessionSocket

log = logging.getLogger("speechwire.relay")


class WebSocketPeer:
    """Our client, as the relay sees it: raw frames in and out, one close."""

    def __init__(self, ws: WebSocket, sock: SessionSocket) -> None:
        self.ws = ws
        self.sock = sock

    async def receive(self) -> str | bytes | None:
        try:
            message = await self.ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else (message.get("bytes") or b"")

    async def send(self, frame: str | bytes) -> None:
        async with self.sock.lock:
            if self.sock.closed or self.ws.application_state != WebSocketState.CONNECTED:
                return
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_text(frame)

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.sock.close(code, reason)


def relays(state: ServerState, model_id: str | None, stt: bool) -> bool:
    """A request goes to the cloud when the cloud is the backend of its kind (TTS or STT), or
    for a model id listed for it."""
    if state.cloud is None:
        return False
    backend = state.settings.stt_backend if stt else state.settings.tts_backend
    return backend == "elevenlabs" or (model_id or "") in state.settings.elevenlabs_models


UPSTREAM_CREDENTIAL_REFUSED = (
    "The speech service refused this server's own credential (its ELEVENLABS_API_KEY), not "
    "yours: the server's operator must replace it."
)
KEY_REFUSED_LOG = "the speech service refused this server's ELEVENLABS_API_KEY (%s): replace it"


def refused_error(exc: UpstreamRefused, stt: bool) -> ProtocolError:
    """How a refused upstream connection reaches our client, in the protocol's shape. Refused
    credentials are the server's (the client's never go upstream): a server error (1011), never
    the ``invalid_api_key`` / ``auth_error`` that tells a client its own key is wrong."""
    if exc.status == 0:
        return ProtocolError("error" if stt else "service_unavailable", exc.message, TRY_AGAIN_LATER)
    message = UPSTREAM_CREDENTIAL_REFUSED if exc.status in (401, 403) else exc.message
    return ProtocolError("error" if stt else "upstream_error", message, INTERNAL_ERROR)


async def relay_websocket(ws: WebSocket, state: ServerState, sock: SessionSocket, stt: bool) -> None:
    """Relay a whole admitted session to the same path in the cloud (our paths are upstream's)."""
    assert state.cloud is not None
    try:
        await state.cloud.relay(WebSocketPeer(ws, sock), ws.url.path, ws.query_params.multi_items())
    except UpstreamRefused as exc:
        if exc.status in (401, 403):
            log.error(KEY_REFUSED_LOG, exc.status)
        else:
            log.warning("relay to the cloud refused: HTTP %s", exc.status)
        await sock.fail(refused_error(exc, stt))


async def relay_http(
    state: ServerState,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
    content_type: str,
    *,
    stream: bool,
) -> Response:
    """The cloud's answer to one HTTP request: streamed as it comes when ``stream`` and it is not
    an error (audio), else whole; a refused connection is our 503 in upstream's error shape."""
    assert state.cloud is not None
    try:
        status, media_type, chunks = await state.cloud.http_stream(path, query, body, content_type)
    except UpstreamRefused as exc:
        detail = {"status": "service_unavailable", "message": exc.message}
        return JSONResponse({"detail": detail}, status_code=503)
    if status in (401, 403):
        async for _ in chunks:  # drain: the connection closes cleanly
            pass
        log.error(KEY_REFUSED_LOG, status)
        detail = {"status": "upstream_error", "message": UPSTREAM_CREDENTIAL_REFUSED}
        return JSONResponse({"detail": detail}, status_code=502)
    if stream and status < 400:
        return StreamingResponse(chunks, status_code=status, media_type=media_type)
    data = b"".join([chunk async for chunk in chunks])
    return Response(data, status_code=status, media_type=media_type)

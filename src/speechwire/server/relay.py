"""Routes' side of the cloud relay: which sessions go to the cloud, and the client as a FramePeer."""

from __future__ import annotations

import contextlib
import logging

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from speechwire.engines.elevenlabs import UpstreamRefused
from speechwire.protocol.errors import INTERNAL_ERROR, POLICY_VIOLATION, TRY_AGAIN_LATER, ProtocolError
from speechwire.server.session_socket import SessionSocket
from speechwire.server.state import ServerState

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


def relays_tts(state: ServerState, model_id: str | None) -> bool:
    """TTS goes to the cloud when it is the TTS backend, or for a model id listed for it."""
    if state.cloud is None:
        return False
    return state.settings.tts_backend == "elevenlabs" or (model_id or "") in state.settings.elevenlabs_models


def relays_stt(state: ServerState, model_id: str | None) -> bool:
    if state.cloud is None:
        return False
    return state.settings.stt_backend == "elevenlabs" or (model_id or "") in state.settings.elevenlabs_models


def refused_error(exc: UpstreamRefused, kind: str) -> ProtocolError:
    """How a refused upstream connection reaches our client, in the protocol's shape."""
    if exc.status in (401, 403):
        error = "auth_error" if kind == "stt" else "invalid_api_key"
        return ProtocolError(error, "The server's key for the speech service was refused.", POLICY_VIOLATION)
    if exc.status == 0:
        return ProtocolError(
            "error" if kind == "stt" else "service_unavailable", exc.message, TRY_AGAIN_LATER
        )
    return ProtocolError("error" if kind == "stt" else "upstream_error", exc.message, INTERNAL_ERROR)

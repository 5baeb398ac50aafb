"""The ElevenLabs cloud as an engine: sessions relayed frame by frame with the server's key.

Why a relay and not a re-implementation: the cloud already speaks the protocol our clients
speak, so the cheapest correct thing is to pass frames through unchanged, except for the two
things that must never cross: the client's credentials for *our* server (scrubbed from the query
and the first message), and *our* key for the cloud (added as a header here, never sent back).
Upstream errors arrive in the protocol's own shape and are forwarded as they are, close code too,
except a credential error: upstream sees no credential but ours, so it is about the server's key,
and passing it on as ``invalid_api_key`` would make our client blame its own (valid) key. It ends
the relay as ``UpstreamRefused`` instead, which the server reports as its own failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger("speechwire.relay")

DEFAULT_BASE_URL = "https://api.elevenlabs.io"

CLIENT_CREDENTIAL_PARAMS = frozenset(
    {"token", "single_use_token", "authorization", "xi-api-key", "xi_api_key"}
)
CLIENT_CREDENTIAL_FIELDS = ("xi_api_key", "xi-api-key", "authorization")
UPSTREAM_AUTH_ERRORS = frozenset({"invalid_api_key", "authentication_required"})
"""TTS error codes for a refused credential (Scribe's is ``message_type: auth_error``)."""
_ERROR_FRAME_MAX = 4096
"""Error frames are short; audio frames are long and are not parsed."""


class FramePeer(Protocol):
    """Our client's side of a relayed session."""

    async def receive(self) -> str | bytes | None:
        """The next frame, or None once the client has gone."""
        ...

    async def send(self, frame: str | bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class UpstreamRefused(Exception):
    """The cloud refused the connection (``status`` 401/403: our key; 0: unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_object(frame: str) -> dict[str, Any] | None:
    try:
        data = json.loads(frame)
    except (json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def is_credential_error(frame: str | bytes) -> bool:
    """Whether an upstream frame says the credential was refused (the protocol's error frame)."""
    if not isinstance(frame, str) or len(frame) > _ERROR_FRAME_MAX or "error" not in frame:
        return False
    data = _json_object(frame) or {}
    return data.get("error") in UPSTREAM_AUTH_ERRORS or data.get("message_type") == "auth_error"


def scrub_query(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's query without its credentials for our server."""
    return [(k, v) for k, v in items if k.lower() not in CLIENT_CREDENTIAL_PARAMS]


def scrub_frame(frame: str | bytes) -> str | bytes:
    """A client frame without credential fields (JSON objects only; anything else unchanged)."""
    if isinstance(frame, bytes) or not any(f in frame for f in CLIENT_CREDENTIAL_FIELDS):
        return frame
    data = _json_object(frame)
    if data is None:
        return frame
    for name in CLIENT_CREDENTIAL_FIELDS:
        data.pop(name, None)
    return json.dumps(data, separators=(",", ":"))


@dataclass(frozen=True)
class ElevenLabsCloud:
    """Where and how to reach the cloud. ``repr`` never shows the key."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    ssl: ssl_module.SSLContext | None = field(default=None, repr=False)
    open_timeout_s: float = 10.0

    def ws_url(self, path: str, query: Iterable[tuple[str, str]]) -> str:
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        base_path = parts.path.rstrip("/")
        return urlunsplit((scheme, parts.netloc, base_path + path, urlencode(list(query)), ""))

    async def relay(self, peer: FramePeer, path: str, query: Iterable[tuple[str, str]]) -> None:
        """Relay one WebSocket session until either side ends; the other side is then closed with
        the same code. Raises ``UpstreamRefused`` if the cloud does not accept the connection."""
        url = self.ws_url(path, scrub_query(query))
        try:
            upstream = await websockets.connect(
                url,
                additional_headers={"xi-api-key": self.api_key},
                ssl=self.ssl if url.startswith("wss:") else None,
                open_timeout=self.open_timeout_s,
                compression=None,  # latency over bytes: frames are small and mostly base64 audio
                max_size=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            message = f"The speech service refused the connection (HTTP {status})."
            raise UpstreamRefused(status, message) from None
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            log.warning("relay: cannot reach %s: %s", self.base_url, type(exc).__name__)
            raise UpstreamRefused(0, "The speech service cannot be reached; try again shortly.") from None
        async with upstream:
            await _pipe(peer, upstream)

    async def http_stream(
        self, path: str, query: Iterable[tuple[str, str]], body: bytes, content_type: str
    ) -> tuple[int, str, AsyncIterator[bytes]]:
        """POST to the cloud; status, content type and the body as it streams."""
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=self.open_timeout_s),
            verify=self.ssl if self.ssl is not None else True,
        )
        try:
            request = client.build_request(
                "POST",
                self.base_url.rstrip("/") + path,
                params=urlencode(scrub_query(query)),
                content=body,
                headers={"xi-api-key": self.api_key, "content-type": content_type},
            )
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            await client.aclose()
            log.warning("relay: cannot reach %s: %s", self.base_url, type(exc).__name__)
            raise UpstreamRefused(0, "The speech service cannot be reached; try again shortly.") from None

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()
                await client.aclose()

        media_type = response.headers.get("content-type", "application/octet-stream")
        return response.status_code, media_type, chunks()


async def _pipe(peer: FramePeer, upstream: Any) -> None:
    async def client_to_upstream() -> None:
        while (frame := await peer.receive()) is not None:
            await upstream.send(scrub_frame(frame))

    async def upstream_to_client() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in upstream:
                if is_credential_error(frame):
                    raise UpstreamRefused(401, "The speech service refused this server's credential.")
                await peer.send(frame)

    up = asyncio.create_task(client_to_upstream())
    down = asyncio.create_task(upstream_to_client())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down in done:
            if (refused := down.exception()) is not None:
                raise refused
            # The cloud ended the session: end ours the same way (its error frame was forwarded).
            code = upstream.close_code or 1000
            await peer.close(1000 if code == 1005 else code, upstream.close_reason or "")
        else:
            up.result()  # re-raise a client-side failure, if any
            await upstream.close()
            with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
                await asyncio.wait_for(down, 5.0)  # let the cloud's last frames through
    finally:
        for task in (up, down):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

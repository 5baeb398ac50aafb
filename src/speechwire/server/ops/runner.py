"""Run the real server under uvicorn in a background thread, on a port the OS picks.

Used by the benchmarks and the tests: the same app and engines as ``speechwire serve``, with the
actual bound port read back from the listening socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import DATA_OPCODES, Frame
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from speechwire.config import Settings
from speechwire.protocol.errors import GOING_AWAY
from speechwire.server.app import InsecureConfiguration, create_app

log = logging.getLogger("speechwire.server")


def _by_kind(sockets: Iterable[Any]) -> str:
    """ "2 /v1/text-to-speech/…, 1 /v1/speech-to-text/realtime": the paths of the open sessions,
    so an operator sees whether the drain waits for long transcriptions or short syntheses."""
    kinds = Counter(sock.ws.scope["path"] for sock in sockets)
    return ", ".join(f"{n} {path}" for path, n in kinds.most_common())


class DrainingServer(uvicorn.Server):
    """uvicorn, with a graceful drain on SIGTERM.

    Why: uvicorn's own shutdown drops every WebSocket at once (1012). Here readiness goes off
    first (``/readyz`` says ``draining``; for ``drain_notice_s`` new sessions are still admitted
    while a balancer notices), then the listening sockets close (no new sessions), open sessions
    get ``drain_s`` to finish, and only the ones still open then are closed with 1001 (going
    away), which a resuming client treats as "reconnect elsewhere".
    """

    def __init__(self, config: uvicorn.Config, drain_s: float = 10.0) -> None:
        super().__init__(config)
        self.drain_s = drain_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(getattr(self.config.app, "state", None), "speechwire", None)
        if state is not None:
            # Readiness goes off first, so a balancer stops choosing this replica; sessions it
            # already sent here are still admitted for ``drain_notice_s``, then the listener closes.
            state.stopping = True
            deadline = time.monotonic() + state.settings.drain_notice_s
            while time.monotonic() < deadline and not self.force_exit:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for server in self.servers:
            server.close()
        if state is not None:
            state.draining = True
            # Why log: a Ctrl-C that seems to hang for drain_s is a drain nobody was told about.
            waiting = len(state.sockets)
            if waiting:
                log.info(
                    "draining: waiting up to %g s for %d open session(s) (%s); Ctrl-C again to close now",
                    self.drain_s,
                    waiting,
                    _by_kind(state.sockets),
                )
            deadline = time.monotonic() + self.drain_s
            while state.sockets and time.monotonic() < deadline and not self.force_exit:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            left = list(state.sockets)
            for sock in left:
                await sock.close(GOING_AWAY, "server shutting down")
            if waiting:
                log.info(
                    "drained: %d session(s) finished, %d closed with 1001 (going away)",
                    max(waiting - len(left), 0),
                    len(left),
                )
            deadline = time.monotonic() + 2.0
            while state.sockets and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await super().shutdown(sockets)


@dataclass
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int
    tls: bool

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(settings: Settings, host: str) -> None:
    """A server without keys (``dev``) admits everyone, so it may only listen on loopback."""
    if not settings.api_keys and not is_loopback(host):
        raise InsecureConfiguration(
            f"Refusing to serve {host} without API keys: anyone who can reach it could use it. "
            "Set SPEECHWIRE_API_KEYS, or keep the development server on 127.0.0.1."
        )


CREDENTIAL_HEADERS = (b"xi-api-key", b"authorization")
CREDENTIAL_QUERY = ("token=", "single_use_token=")


class _GuardedServerProtocol(ServerProtocol):
    """websockets' server protocol, answering the handshake with 503 when ``overloaded``, and
    whose first data message may be at most the ``max_message_size`` set before it while
    ``full_limit`` is kept. The full limit is restored as the first message completes, inside
    the parser, so a second frame already buffered behind it is judged by the full one."""

    overloaded = False
    full_limit: int | None = None

    def recv_frame(self, frame: Frame) -> None:
        super().recv_frame(frame)
        if self.full_limit is not None and frame.fin and frame.opcode in DATA_OPCODES:
            self.max_message_size, self.full_limit = self.full_limit, None

    def accept(self, request: Request) -> Response:
        if self.overloaded:  # uvicorn sends the rejection and closes
            return self.reject(503, "Too many connections; try again shortly.\n")
        return super().accept(request)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with two guards it lacks.

    - A connection that presents no credential in its request (no ``xi-api-key`` or
      ``authorization`` header, no token in the query) on a server with keys may send a first
      message of at most ``preauth_limit`` bytes (its key may be in that message; the TTS
      protocol allows it). The size is checked on the frame header, before the payload is
      buffered, so an unauthenticated peer costs a few KB, not ``ws_max_size``.
    - uvicorn's ``limit_concurrency`` answers HTTP requests with 503 but never looks at
      WebSocket upgrades; here an upgrade beyond it is refused with 503 as well.
    """

    preauth_limit: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        old = self.conn
        self.conn = self.guarded = _GuardedServerProtocol(
            extensions=old.available_extensions, max_size=old.max_message_size, logger=old.logger
        )

    def handle_connect(self, event: Request) -> None:
        conn, limit = self.guarded, self.config.limit_concurrency
        conn.overloaded = (
            limit is not None and len(self.connections) >= limit
        )  # the newcomer counts, as for HTTP
        headers = {name.lower().encode() for name in event.headers}
        query = event.path.partition("?")[2].split("&")
        presents = any(h in headers for h in CREDENTIAL_HEADERS) or any(
            q.startswith(CREDENTIAL_QUERY) for q in query
        )
        if self.preauth_limit is not None and not presents:
            conn.full_limit, conn.max_message_size = conn.max_message_size, self.preauth_limit
        super().handle_connect(event)


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, dropping a connection whose request headers are not complete
    ``header_timeout_s`` after it opened (or after its previous response). uvicorn has no such
    timeout: its keep-alive timer stops at the first byte, so a peer dribbling one header byte
    every few seconds (slowloris) would hold its connection for ever."""

    header_timeout_s: float = 5.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()  # harmless on a timer that has fired
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        upgraded = self.transport.get_protocol() is not self
        if not upgraded and self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # nothing to answer: no request was made


def uvicorn_config(
    settings: Settings,
    app: ASGIApp,
    host: str,
    port: int,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    **options: Any,
) -> uvicorn.Config:
    """The one uvicorn configuration for this server (``speechwire serve`` and ``start_server``).

    Frames up to twice ``max_message_bytes`` reach the session, so one just over the limit gets
    the protocol's own error (``message_too_large``) rather than websockets' 1009; larger ones
    are refused on their header. Connections are capped (``max_connections``), request headers
    must arrive within ``header_timeout_s`` and fit h11's 16 KiB, and an unidentified WebSocket's
    first message is small (``max_preauth_message_bytes``). uvicorn's own forwarded-header reading
    (which believes any loopback peer) is off: ``server.app`` believes only trusted proxies."""
    preauth = settings.max_preauth_message_bytes if settings.api_keys else None
    ws = type("WebSocketProtocol", (GuardedWebSocketProtocol,), {"preauth_limit": preauth})
    http = type("HTTPProtocol", (HeaderTimeoutH11Protocol,), {"header_timeout_s": settings.header_timeout_s})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        http=http,
        ws=ws,
        ws_max_size=2 * settings.max_message_bytes,
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        # No permessage-deflate: a 1 KB compressed frame of repeated text inflated to 100 KB, and
        # one socket read held hundreds of them (tens of MiB per read, issue 14); compressing
        # base64 audio costs CPU on every chunk for a quarter of its bytes. Clients need nothing.
        ws_per_message_deflate=False,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=16 * 1024,
        proxy_headers=False,  # forwarded headers only from SPEECHWIRE_TRUSTED_PROXIES (server.app)
        **options,
    )


def start_server(
    settings: Settings | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    startup_timeout: float = 60.0,
) -> RunningServer:
    """Start uvicorn with the speechwire app and wait until it accepts connections."""
    settings = settings or Settings()
    check_binding(settings, host)
    app = create_app(settings)
    config = uvicorn_config(
        settings, app, host, port, ssl_certfile, ssl_keyfile, log_level="warning", lifespan="on"
    )
    server = DrainingServer(config, settings.drain_s)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(server, thread, host, int(bound), tls=ssl_certfile is not None)

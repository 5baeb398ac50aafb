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

import uvicorn

from speechwire.config import Settings
from speechwire.protocol.errors import GOING_AWAY
from speechwire.server.app import InsecureConfiguration, create_app

log = logging.getLogger("speechwire.server")


def _by_kind(sockets: Iterable[Any]) -> str:
    """ "2 /v1/text-to-speech/…, 1 /v1/speech-to-text/realtime": the paths of the open sessions,
    so an operator sees whether the drain waits for long transcriptions or short syntheses."""
    kinds = Counter(str(getattr(getattr(s, "ws", None), "scope", {}).get("path", "?")) for s in sockets)
    return ", ".join(f"{n} {path}" for path, n in kinds.most_common())


class DrainingServer(uvicorn.Server):
    """uvicorn, with a graceful drain on SIGTERM.

    Why: uvicorn's own shutdown drops every WebSocket at once (1012). Here the listening sockets
    close first (no new sessions), open sessions get ``drain_s`` to finish, and only the ones
    still open then are closed with 1001 (going away), which a resuming client treats as
    "reconnect elsewhere".
    """

    def __init__(self, config: uvicorn.Config, drain_s: float = 10.0) -> None:
        super().__init__(config)
        self.drain_s = drain_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        state = getattr(getattr(self.config.app, "state", None), "speechwire", None)
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
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(settings: Settings, host: str) -> None:
    """A server without keys (``dev``) admits everyone, so it may only listen on loopback."""
    if not settings.api_keys and not is_loopback(host):
        raise InsecureConfiguration(
            f"Refusing to serve {host} without API keys: anyone who can reach it could use it. "
            "Set SPEECHWIRE_API_KEYS, or keep the development server on 127.0.0.1."
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
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ws_max_size=max(16 * 1024 * 1024, 2 * settings.max_message_bytes),
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        log_level="warning",
        lifespan="on",
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

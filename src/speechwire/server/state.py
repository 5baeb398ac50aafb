"""The state every route shares, kept on ``app.state`` by the app's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from starlette.types import ASGIApp

from speechwire.config import Settings
from speechwire.engines.base import STTEngine
from speechwire.engines.elevenlabs import ElevenLabsCloud
from speechwire.engines.pool import EnginePool
from speechwire.engines.registry import EngineRegistry
from speechwire.server.limits import Limiter, RateLimiter
from speechwire.server.metrics import Metrics
from speechwire.server.session_socket import SessionSocket
from speechwire.server.tokens import MemoryTokenStore, TokenStore


@dataclass
class ServerState:
    """Settings, the engine registry, and the engine worker pool."""

    settings: Settings
    registry: EngineRegistry
    tts_pool: EnginePool
    stt_engines: dict[str, STTEngine] = field(default_factory=dict)
    stt_pool: EnginePool | None = None
    sockets: set[SessionSocket] = field(default_factory=set)
    draining: bool = False
    tokens: TokenStore = field(default_factory=MemoryTokenStore)
    limiter: Limiter = field(default_factory=RateLimiter)
    cloud: ElevenLabsCloud | None = None
    metrics: Metrics = field(default_factory=Metrics)
    """The ElevenLabs cloud, when the server has a key for it."""

    @property
    def sessions(self) -> int:
        return len(self.sockets)

    @contextlib.contextmanager
    def admitted(self, sock: SessionSocket) -> Iterator[bool]:
        """Registers an open session; yields False (registers nothing) when the server is full or
        draining for shutdown."""
        if self.draining or len(self.sockets) >= self.settings.max_sessions:
            yield False
            return
        self.sockets.add(sock)
        try:
            yield True
        finally:
            self.sockets.discard(sock)


def server_state(app: ASGIApp) -> ServerState:
    state: ServerState = app.state.speechwire  # type: ignore[attr-defined]
    return state

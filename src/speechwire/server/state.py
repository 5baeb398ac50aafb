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
from speechwire.server.access.limits import Limiter, RateLimiter
from speechwire.server.access.tokens import MemoryTokenStore, TokenStore
from speechwire.server.ops.metrics import Metrics
from speechwire.server.ws.session_socket import SessionSocket


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
    engine_sessions: dict[str, int] = field(default_factory=dict)
    """Open local sessions by engine kind (``tts``, ``stt``), for admission."""
    tokens: TokenStore = field(default_factory=MemoryTokenStore)
    limiter: Limiter = field(default_factory=RateLimiter)
    cloud: ElevenLabsCloud | None = None
    metrics: Metrics = field(default_factory=Metrics)
    """The ElevenLabs cloud, when the server has a key for it."""

    @property
    def sessions(self) -> int:
        return len(self.sockets)

    @contextlib.contextmanager
    def admitted(self, sock: SessionSocket, kind: str = "tts", local: bool = True) -> Iterator[bool]:
        """Registers an open session; yields False (registers nothing) when the server is full,
        when the engines of ``kind`` already serve as many local sessions as they keep real-time,
        or when draining for shutdown. Relayed sessions cost no engine time."""
        cap = self.settings.max_stt_sessions if kind == "stt" else self.settings.max_tts_sessions
        busy = self.engine_sessions.get(kind, 0)
        if self.draining or len(self.sockets) >= self.settings.max_sessions or (local and busy >= cap):
            yield False
            return
        self.sockets.add(sock)
        if local:
            self.engine_sessions[kind] = busy + 1
        try:
            yield True
        finally:
            self.sockets.discard(sock)
            if local:
                self.engine_sessions[kind] -= 1


def server_state(app: ASGIApp) -> ServerState:
    state: ServerState = app.state.speechwire  # type: ignore[attr-defined]
    return state

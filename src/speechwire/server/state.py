"""The state every route shares, kept on ``app.state`` by the app's lifespan."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp

from speechwire.config import Settings
from speechwire.engines.base import STTEngine
from speechwire.engines.elevenlabs import ElevenLabsCloud
from speechwire.engines.pool import EnginePool
from speechwire.engines.registry import EngineRegistry
from speechwire.server.access.limits import Limiter, RateLimiter, TrackedLimiter
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

    open_by_caller: collections.Counter[str] = field(default_factory=collections.Counter)
    """Open sessions (WebSocket and HTTP synthesis or transcription) by key, in this process."""
    engine_by_caller: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    """Open local sessions by (engine kind, key): each key's share of the engines."""
    http_sessions: int = 0
    """HTTP syntheses and transcriptions in progress: sessions too, for ``max_sessions``."""
    unauthenticated: collections.Counter[str] = field(default_factory=collections.Counter)
    """WebSockets still authenticating, by client address."""

    def __post_init__(self) -> None:
        if not isinstance(self.limiter, TrackedLimiter):
            self.limiter = TrackedLimiter(self.limiter)

    @property
    def sessions(self) -> int:
        return len(self.sockets)

    def key_share(self, kind: str) -> int:
        """Local sessions of ``kind`` one key may hold: ``key_engine_share`` of the engines."""
        cap = self.settings.max_stt_sessions if kind == "stt" else self.settings.max_tts_sessions
        return max(1, int(cap * self.settings.key_engine_share))

    def refusal(self, kind: str, local: bool, caller: str | None) -> Refusal | None:
        """Why one more session of ``kind`` for ``caller`` (None: no key, a dev server) is not
        admitted now, or None."""
        settings = self.settings
        cap = settings.max_stt_sessions if kind == "stt" else settings.max_tts_sessions
        if self.draining:
            return Refusal(SERVER_FULL, "The server is shutting down; try another or again shortly.")
        if len(self.sockets) + self.http_sessions >= settings.max_sessions:
            return Refusal(SERVER_FULL, "The server is at its session limit; try again shortly.")
        if local and self.engine_sessions.get(kind, 0) >= cap:
            return Refusal(SERVER_FULL, "The server is at its session limit; try again shortly.")
        if caller is None:
            return None
        if self.open_by_caller[caller] >= settings.max_sessions_per_key:
            limit = settings.max_sessions_per_key
            return Refusal(KEY_LIMIT, f"Too many open sessions for this key (at most {limit}).")
        share = self.key_share(kind)
        if local and self.engine_by_caller[kind, caller] >= share:
            what = "speech-to-text" if kind == "stt" else "text-to-speech"
            return Refusal(
                KEY_LIMIT,
                f"This key holds its share of the {what} engines ({share} sessions at once); "
                "close one or try again shortly.",
            )
        return None

    def admit(
        self, sock: SessionSocket | None, kind: str = "tts", local: bool = True, caller: str | None = None
    ) -> Refusal | Callable[[], None]:
        """Registers an open session and returns what ends it (idempotent); or why it is refused
        (registering nothing): the server is full or draining, the engines of ``kind`` already
        serve as many local sessions as they keep real-time, or ``caller`` holds its share.
        Relayed sessions cost no engine time. ``sock`` None: an HTTP request, counted for the
        caps but not drained (uvicorn waits for HTTP responses itself)."""
        refused = self.refusal(kind, local, caller)
        if refused is not None:
            return refused
        if sock is None:
            self.http_sessions += 1
        else:
            self.sockets.add(sock)
        if local:
            self.engine_sessions[kind] = self.engine_sessions.get(kind, 0) + 1
        if caller is not None:
            self.open_by_caller[caller] += 1
            if local:
                self.engine_by_caller[kind, caller] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            if sock is None:
                self.http_sessions -= 1
            else:
                self.sockets.discard(sock)
            if local:
                self.engine_sessions[kind] -= 1
            if caller is not None:
                _decrement(self.open_by_caller, caller)
                if local:
                    _decrement(self.engine_by_caller, (kind, caller))

        return release

    @contextlib.contextmanager
    def admitted(
        self, sock: SessionSocket | None, kind: str = "tts", local: bool = True, caller: str | None = None
    ) -> Iterator[Refusal | None]:
        """``admit`` for a block: yields None while the session is registered, or the refusal."""
        admission = self.admit(sock, kind, local, caller)
        if isinstance(admission, Refusal):
            yield admission
            return
        try:
            yield None
        finally:
            admission()

    @contextlib.contextmanager
    def authenticating(self, address: str | None) -> Iterator[Callable[[], None] | None]:
        """Counts a WebSocket that has not authenticated yet; yields the callable that ends the
        count (idempotent; it ends anyway on exit), or None when ``address`` or the server
        already has as many as allowed. ``address`` None: not counted (it cannot wait)."""
        settings = self.settings
        if address is None:
            yield lambda: None
            return
        if (
            self.unauthenticated[address] >= settings.max_unauthenticated_per_address
            or sum(self.unauthenticated.values()) >= settings.max_unauthenticated
        ):
            yield None
            return
        self.unauthenticated[address] += 1
        done = False

        def end() -> None:
            nonlocal done
            if not done:
                done = True
                _decrement(self.unauthenticated, address)

        try:
            yield end
        finally:
            end()


SERVER_FULL = "resource_exhausted"
KEY_LIMIT = "rate_limited"


@dataclass(frozen=True)
class Refusal:
    """Why a session was not admitted: ``error`` is ``resource_exhausted`` (the server or its
    engines are full) or ``rate_limited`` (this key holds its share)."""

    error: str
    message: str


def _decrement(counter: collections.Counter[Any], key: Any) -> None:
    """Counters of open things drop their zeros, so memory follows what is open, not who came."""
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def server_state(app: ASGIApp) -> ServerState:
    state: ServerState = app.state.speechwire  # type: ignore[attr-defined]
    return state

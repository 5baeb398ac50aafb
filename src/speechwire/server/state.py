"""The state every route shares, kept on ``app.state`` by the app's lifespan."""

from __future__ import annotations

import collections
import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp

from speechwire.config import Settings
from speechwire.engines.base import STTEngine
from speechwire.engines.elevenlabs import ElevenLabsCloud
from speechwire.engines.pool import EnginePool
from speechwire.engines.registry import EngineRegistry
from speechwire.server.access.limits import OPEN_REFUSED, Limiter, RateLimiter
from speechwire.server.access.tokens import MemoryTokenStore, TokenStore
from speechwire.server.ops.metrics import Metrics
from speechwire.server.ws.session_socket import SessionSocket

SERVER_FULL = "resource_exhausted"
KEY_LIMIT = "rate_limited"
UNAUTHENTICATED = "unauthenticated"
ENGINE_KINDS = ("tts", "stt")
"""The kinds admission counts engine sessions by (``ServerState.open``)."""
SERVER_KIND = "server"
"""The label of the server-wide free slots (``max_sessions``) beside the engine kinds."""


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
    """Set once the drain starts: new sessions are refused."""
    stopping: bool = False
    """Set on SIGTERM, before the drain: readiness reports ``draining`` so a balancer stops
    sending new sessions here while this replica still admits the ones already on their way."""
    tokens: TokenStore = field(default_factory=MemoryTokenStore)
    limiter: Limiter = field(default_factory=RateLimiter)
    cloud: ElevenLabsCloud | None = None
    """The ElevenLabs cloud, when the server has a key for it."""
    metrics: Metrics = field(default_factory=Metrics)
    open: collections.Counter[Any] = field(default_factory=collections.Counter)
    """What is open in this process, for admission: ``"http"`` (HTTP syntheses and
    transcriptions: sessions too, for ``max_sessions``), an engine kind (its local sessions), a
    key (its sessions), ``(kind, key)`` (the key's share of the engines), ``UNAUTHENTICATED``
    and ``(UNAUTHENTICATED, address)`` (WebSockets still authenticating)."""

    def __post_init__(self) -> None:
        """The free-slot gauge reads this state at each scrape, so it never disagrees with it."""
        for kind in (*self.served_kinds(), SERVER_KIND):
            self.metrics.free_slots.labels(kind).set_function(functools.partial(self._free, kind))

    def _free(self, kind: str) -> int:
        """One kind's free slots, read by the gauge at every scrape."""
        return self.free_slots()[kind]

    def served_kinds(self) -> tuple[str, ...]:
        """The engine kinds this replica serves locally: TTS always, STT when an engine loaded."""
        return ENGINE_KINDS if self.stt_engines else ENGINE_KINDS[:1]

    def free_slots(self) -> dict[str, int]:
        """How many more sessions ``admit`` would take now, per engine kind it serves, and
        server-wide (``SERVER_KIND``): the same caps and counts as ``refusal``, so a balancer that
        steers by them agrees with admission. A kind's figure is bounded by the server-wide one
        (a TTS slot is no use when ``max_sessions`` is reached); 0 for all while draining. Per-key
        shares are not here: they are a caller's budget, the same on every replica."""
        settings, held = self.settings, self.open
        server = 0 if self.draining else max(0, settings.max_sessions - len(self.sockets) - held["http"])
        caps = {"tts": settings.max_tts_sessions, "stt": settings.max_stt_sessions}
        free = {kind: min(server, max(0, caps[kind] - held[kind])) for kind in self.served_kinds()}
        return {**free, SERVER_KIND: server}

    def readiness(self) -> tuple[str, dict[str, int]]:
        """``ready`` when a new session of every kind served would be admitted; else ``draining``
        (SIGTERM received) or ``full`` (some kind has no free slot): what ``/readyz`` reports."""
        free = self.free_slots()
        if self.stopping or self.draining:
            return "draining", free
        return ("ready" if all(free.values()) else "full"), free

    def refusal(self, kind: str, local: bool, caller: str | None) -> Refusal | None:
        """Why one more session of ``kind`` for ``caller`` (None: no key, a dev server) is not
        admitted now, or None."""
        settings, held = self.settings, self.open
        cap = settings.max_stt_sessions if kind == "stt" else settings.max_tts_sessions
        if self.draining:
            return Refusal(SERVER_FULL, "The server is shutting down; try another or again shortly.")
        if len(self.sockets) + held["http"] >= settings.max_sessions or (local and held[kind] >= cap):
            return Refusal(SERVER_FULL, "The server is at its session limit; try again shortly.")
        if caller is None:
            return None
        if held[caller] >= settings.max_sessions_per_key:
            return Refusal(KEY_LIMIT, OPEN_REFUSED.format(settings.max_sessions_per_key))
        share = max(1, int(cap * settings.key_engine_share))
        if local and held[kind, caller] >= share:
            what = "speech-to-text" if kind == "stt" else "text-to-speech"
            held_share = f"This key holds its share of the {what} engines ({share} sessions at once)"
            return Refusal(KEY_LIMIT, held_share + "; close one or try again shortly.")
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
        keys: list[Any] = ["http"] if sock is None else []
        if local:
            keys.append(kind)
        if caller is not None:
            keys += [caller, (kind, caller)] if local else [caller]
        ends = contextlib.ExitStack()
        ends.callback(self._hold(keys))
        if sock is not None:
            self.sockets.add(sock)
            ends.callback(self.sockets.discard, sock)
        return ends.close

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

    def authenticating(self, address: str) -> Callable[[], None] | None:
        """Counts a WebSocket from ``address`` that has not authenticated yet, until the returned
        callable (idempotent) is called; None when the address or the server already has as many
        as allowed."""
        if (
            self.open[UNAUTHENTICATED, address] >= self.settings.max_unauthenticated_per_address
            or self.open[UNAUTHENTICATED] >= self.settings.max_unauthenticated
        ):
            return None
        return self._hold([UNAUTHENTICATED, (UNAUTHENTICATED, address)])

    def _hold(self, keys: list[Any]) -> Callable[[], None]:
        """Counts ``keys`` in ``open`` until the returned callable (idempotent) is called. Zeros
        are dropped, so memory follows what is open, not who came."""
        self.open.update(keys)

        def release() -> None:
            for key in keys:
                self.open[key] -= 1
                if self.open[key] <= 0:
                    del self.open[key]
            keys.clear()

        return release


@dataclass(frozen=True)
class Refusal:
    """Why a session was not admitted: ``error`` is ``resource_exhausted`` (the server or its
    engines are full) or ``rate_limited`` (this key holds its share)."""

    error: str
    message: str


def server_state(app: ASGIApp) -> ServerState:
    state: ServerState = app.state.speechwire  # type: ignore[attr-defined]
    return state

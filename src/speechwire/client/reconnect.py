"""The one reconnecting connection: states, backoff with full jitter, give-up, pings, keep-alive.

Every client (TTS, multi-context, STT) opens its socket through ``Connection``; with
``reconnect=`` set it comes back after a loss, and the client's sans-I/O session says what to send
again. A lost connection is a value (``Lost``), and whether to retry is
``speechwire.protocol.retry.decide`` (one table, shared with the browser).

Each policy in one line, with its reason:
- Backoff doubles from ``initial`` to ``maximum`` with full jitter: many clients cut by the same
  fault must not come back in lock-step and knock the server over again.
- Give up after ``quick_failures`` connections in a row that each die within ``quick_window_s``
  without delivering anything: a server that accepts and then drops us at once (bad key, bad
  request, crash loop) will not heal by retrying, while a flaky network that lets work through does.
- Keep-alive is the protocol's own message, sent only when idle: it resets the server's
  inactivity timer without adding traffic to a busy stream.
- WebSocket pings (5 s interval, 5 s timeout) when reconnecting: a half-open socket is noticed in
  seconds, not at the TCP timeout; without ``reconnect`` websockets' defaults apply, as before.
- A handshake refused with HTTP 4xx (not 429) is not retried: the same request is refused again;
  nor is a certificate that fails verification: the same certificate fails again.
- Frames sent while the socket is down are not queued: the session's resume frames cover them.
- ``wss://`` verifies the server against the system trust store (OpenSSL's defaults, so
  ``SSL_CERT_FILE`` works), or against ``cafile`` for a private CA; never unverified.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import ClientConnection

from speechwire.client.errors import ConnectionClosedError
from speechwire.protocol.retry import Decision, decide

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""ElevenLabs frames reach 16 MB; a client must accept them."""


class ConnectionState(enum.Enum):
    """What a UI shows: connecting, open, reconnecting (with a countdown), closed, failed."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StateChange:
    state: ConnectionState
    attempt: int = 0
    retry_in_s: float | None = None
    reason: str = ""


def backoff(
    initial: float = 0.2, maximum: float = 8.0, factor: float = 2.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Delays before each reconnection attempt: exponential, capped, with full jitter."""
    rand = rng or random.Random()
    ceiling = initial
    while True:
        yield rand.uniform(0, ceiling)
        ceiling = min(maximum, ceiling * factor)


@dataclass
class GiveUpPolicy:
    """Gives up after ``quick_failures`` consecutive connections that each lived < ``quick_window_s``
    and delivered nothing, or after ``max_attempts`` failed connection attempts in a row."""

    quick_failures: int = 3
    quick_window_s: float = 5.0
    max_attempts: int = 50
    _quick: int = 0
    _attempts: int = 0

    def connection_ended(self, lived_s: float, progressed: bool = False) -> None:
        self._quick = self._quick + 1 if lived_s < self.quick_window_s and not progressed else 0

    def attempt_failed(self) -> None:
        self._attempts += 1

    def connected(self) -> None:
        self._attempts = 0

    @property
    def give_up(self) -> bool:
        return self._quick >= self.quick_failures or self._attempts >= self.max_attempts


@dataclass
class StateTracker:
    """Holds the current state and tells listeners about every change."""

    listeners: list[Callable[[StateChange], None]] = field(default_factory=list)
    history: list[StateChange] = field(default_factory=list)

    @property
    def state(self) -> ConnectionState:
        return self.history[-1].state if self.history else ConnectionState.CLOSED

    def set(self, change: StateChange) -> None:
        self.history.append(change)
        for listener in list(self.listeners):
            listener(change)


@dataclass
class ReconnectPolicy:
    """How a client comes back: backoff bounds, when to give up, handshake and ping timeouts."""

    give_up: GiveUpPolicy = field(default_factory=GiveUpPolicy)
    initial_s: float = 0.2
    maximum_s: float = 8.0
    connect_timeout: float = 5.0
    ping_interval: float = 5.0
    ping_timeout: float = 5.0


def reconnect_policy(reconnect: ReconnectPolicy | bool | None) -> ReconnectPolicy | None:
    """``reconnect=True`` means the default policy; False or None, one connection only."""
    if reconnect is True:
        return ReconnectPolicy()
    return reconnect or None


@dataclass(frozen=True, slots=True)
class Lost:
    """A connection that ended: its close code (None: no close frame) and reason."""

    code: int | None
    reason: str


def ws_url(base_url: str) -> str:
    """``http(s)://`` base URLs name the same server over ``ws(s)://``."""
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://") :]
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :]
    return base_url


def tls_context(
    url: str, ssl: ssl_module.SSLContext | None = None, cafile: str | None = None
) -> ssl_module.SSLContext | None:
    """The TLS context for ``url``: the one given, else for ``wss://`` a verifying context
    (system trust store, plus ``cafile``); None for ``ws://``, which websockets requires."""
    if not url.startswith("wss://"):
        return None
    return ssl or ssl_module.create_default_context(cafile=cafile)


def _refused(exc: Exception) -> bool:
    """Not worth retrying: a handshake refused with 4xx, or a certificate we do not trust."""
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return True
    if not isinstance(exc, websockets.InvalidStatus):
        return False
    status = exc.response.status_code
    return 400 <= status < 500 and status != 429


class Connection:
    """One logical connection over as many sockets as the policy allows."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        cafile: str | None = None,
        reconnect: ReconnectPolicy | bool | None = None,
        on_state: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.url = url
        self.headers = {"xi-api-key": api_key} if api_key else None
        self.ssl = tls_context(url, ssl, cafile)
        self.policy = reconnect_policy(reconnect)
        self.states = StateTracker()
        if on_state is not None:
            self.states.listeners.append(on_state)
        self.ws: ClientConnection | None = None
        self.lock = asyncio.Lock()
        """Held while a frame is built and sent, and while a new socket is opened and resumed."""
        self.opened_at = 0.0
        self.last_send = time.monotonic()
        self.reconnects = 0
        self.reconnect_times: list[float] = []
        self.progressed = False
        """Set by the client when this socket delivered something (audio, a transcript)."""
        self.closed = False
        self._keepalive: asyncio.Task[None] | None = None

    @property
    def state(self) -> ConnectionState:
        return self.states.state

    async def _connect(self) -> ClientConnection:
        if self.policy is None:
            return await websockets.connect(
                self.url,
                additional_headers=self.headers,
                max_size=MAX_FRAME_BYTES,
                ssl=self.ssl,
                compression=None,
            )
        return await asyncio.wait_for(
            websockets.connect(
                self.url,
                additional_headers=self.headers,
                max_size=MAX_FRAME_BYTES,
                ssl=self.ssl,
                compression=None,
                ping_interval=self.policy.ping_interval,
                ping_timeout=self.policy.ping_timeout,
                open_timeout=self.policy.connect_timeout,
            ),
            self.policy.connect_timeout + 1,
        )

    async def open(self, reconnecting: bool = False) -> ClientConnection:
        """A new socket, retried with backoff under the policy (one attempt without one)."""
        policy = self.policy
        delays = backoff(policy.initial_s, policy.maximum_s) if policy else iter(())
        attempt = 0
        lost_at = time.perf_counter()
        while True:
            attempt += 1
            state = ConnectionState.RECONNECTING if reconnecting else ConnectionState.CONNECTING
            self.states.set(StateChange(state, attempt))
            try:
                ws = await self._connect()
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
                if policy is None or _refused(exc):
                    self.states.set(StateChange(ConnectionState.FAILED, attempt, reason=str(exc)))
                    raise
                policy.give_up.attempt_failed()
                if policy.give_up.give_up:
                    self.states.set(StateChange(ConnectionState.FAILED, attempt, reason=str(exc)))
                    raise ConnectionClosedError(f"gave up after {attempt} attempts: {exc}") from exc
                delay = next(delays)
                self.states.set(
                    StateChange(ConnectionState.RECONNECTING, attempt, retry_in_s=delay, reason=str(exc))
                )
                await asyncio.sleep(delay)
                continue
            if policy is not None:
                policy.give_up.connected()
            self.ws = ws
            self.opened_at = time.monotonic()
            self.last_send = self.opened_at
            if reconnecting:
                self.reconnects += 1
                self.reconnect_times.append(time.perf_counter() - lost_at)
            self.states.set(StateChange(ConnectionState.OPEN, attempt))
            return ws

    async def send(self, frame: str | Callable[[], str | None]) -> bool:
        """Send a frame (or build it under the lock, so a resume cannot overtake it).

        False when the socket is down: the reader sees the close, and the resume frames after the
        reconnect cover what was not sent. A frame built while down is still logged by the session."""
        async with self.lock:
            text = frame() if callable(frame) else frame
            return await self.send_now(text)

    async def send_now(self, text: str | None) -> bool:
        """Send with the lock already held."""
        if text is None or self.ws is None:
            return False
        try:
            await self.ws.send(text)
        except websockets.ConnectionClosed:
            return False
        self.last_send = time.monotonic()
        return True

    async def frames(self) -> AsyncIterator[str | bytes | Lost]:
        """The current socket's frames, then one ``Lost`` when it ends."""
        ws = self.ws
        if ws is None:
            raise ConnectionClosedError("not connected")
        with contextlib.suppress(websockets.ConnectionClosed, OSError):
            async for frame in ws:
                yield frame
        yield Lost(ws.close_code, ws.close_reason or (str(ws.close_exc) if ws.close_exc else ""))

    def should_retry(self, lost: Lost, error: str | None) -> bool:
        """After ``lost`` (with the last error type the server sent): open a new socket?

        Raises ``ConnectionClosedError`` when the give-up policy says the server will not heal."""
        self.ws = None
        if self.policy is None or self.closed:
            return False
        if decide(lost.code, error) is Decision.FAIL:
            self.states.set(StateChange(ConnectionState.FAILED, reason=error or lost.reason))
            return False
        self.policy.give_up.connection_ended(time.monotonic() - self.opened_at, self.progressed)
        self.progressed = False
        if self.policy.give_up.give_up:
            self.states.set(StateChange(ConnectionState.FAILED, reason=lost.reason))
            raise ConnectionClosedError(f"gave up: connections keep dying quickly ({lost.reason})")
        return True

    def keep_alive(self, every_s: float, send: Callable[[], Awaitable[object]]) -> None:
        """Run ``send`` whenever nothing was sent for ``every_s`` (until ``close``)."""

        async def loop() -> None:
            while not self.closed:
                await asyncio.sleep(every_s / 4)
                if time.monotonic() - self.last_send >= every_s:
                    await send()

        self._keepalive = asyncio.create_task(loop())

    async def close(self) -> None:
        self.closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.ws is not None:
            await self.ws.close()
            self.ws = None
        self.states.set(StateChange(ConnectionState.CLOSED))


def monotonic() -> float:
    return time.monotonic()

"""The one reconnecting connection (states, backoff, give-up, pings, keep-alive) and what every
client shares on top of it (``Client``: ``async with``, opening and resuming, the reader, close).

Every client (TTS, multi-context, STT) opens its socket through ``Connection``; with
``reconnect=`` set it comes back after a loss, and the client's sans-I/O session says what to send
again. A lost connection is a value (``Lost``), and whether to retry is
``speechwire.protocol.retry.decide`` (one table, shared with the browser).

Each policy in one line, with its reason:
- Backoff doubles from ``initial`` to ``maximum`` with full jitter: many clients cut by the same
  fault must not come back in lock-step and knock the server over again (the browser uses the same
  constants and formula: ``protocol.retry.BACKOFF_*``, ``web/wire.js``).
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
import itertools
import random
import re
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, Self, TypedDict, TypeVar, Unpack
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection

from speechwire.client.errors import ConnectionClosedError, server_error
from speechwire.protocol.retry import BACKOFF_INITIAL_S, BACKOFF_MAX_S, Decision, backoff_ceiling, decide
from speechwire.protocol.stt_client import TranscriptError
from speechwire.protocol.tts_client import ErrorReceived

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""ElevenLabs frames reach 16 MB; a client must accept them."""


class ConnectionState(enum.StrEnum):
    """What a UI shows: connecting, open, reconnecting (with a countdown), closed, failed; each
    value is its name in lower case, as the browser's ``State`` spells it."""

    CONNECTING = enum.auto()
    OPEN = enum.auto()
    RECONNECTING = enum.auto()
    CLOSED = enum.auto()
    FAILED = enum.auto()


@dataclass(frozen=True, slots=True)
class StateChange:
    state: ConnectionState
    attempt: int = 0
    retry_in_s: float | None = None
    reason: str = ""


def backoff(
    initial: float = BACKOFF_INITIAL_S, maximum: float = BACKOFF_MAX_S, rng: random.Random | None = None
) -> Iterator[float]:
    """Delays before each reconnection attempt: exponential, capped, with full jitter."""
    rand = rng or random.Random()
    return (rand.uniform(0, backoff_ceiling(n, initial, maximum)) for n in itertools.count())


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
class ReconnectPolicy:
    """How a client comes back: backoff bounds, when to give up, handshake and ping timeouts."""

    give_up: GiveUpPolicy = field(default_factory=GiveUpPolicy)
    initial_s: float = BACKOFF_INITIAL_S
    maximum_s: float = BACKOFF_MAX_S
    connect_timeout: float = 5.0
    ping_interval: float = 5.0
    ping_timeout: float = 5.0


def resumable(options: dict[str, Any]) -> dict[str, Any]:
    """The ``Resumable*`` classes' options: reconnection on, tuned by ``give_up``,
    ``connect_timeout``, ``ping_interval`` and ``ping_timeout`` (an explicit ``reconnect`` wins)."""
    tuning = {k: options.pop(k) for k in ("connect_timeout", "ping_interval", "ping_timeout") if k in options}
    give_up = options.pop("give_up", None) or GiveUpPolicy()
    options.setdefault("reconnect", ReconnectPolicy(give_up, **tuning))
    return options


@dataclass(frozen=True, slots=True)
class Lost:
    """A connection that ended: its close code (None: no close frame) and reason."""

    code: int | None
    reason: str


def ws_url(base_url: str) -> str:
    """``http(s)://`` base URLs name the same server over ``ws(s)://``."""
    return re.sub(r"^http(s?)://", r"ws\1://", base_url)


def _refused(exc: Exception) -> bool:
    """Not worth retrying: a handshake refused with 4xx, or a certificate we do not trust."""
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return True
    status = exc.response.status_code if isinstance(exc, websockets.InvalidStatus) else 0
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
        # wss://: the context given, else one verifying against the trust store (plus cafile);
        # ws:// must have none (websockets refuses one).
        wss = url.startswith("wss://")
        self.ssl = (ssl or ssl_module.create_default_context(cafile=cafile)) if wss else None
        self.policy = ReconnectPolicy() if reconnect is True else reconnect or None
        self.state = ConnectionState.CLOSED
        self.listeners = [on_state] if on_state is not None else []
        self.ws: ClientConnection | None = None
        self.lock = asyncio.Lock()
        """Held while a frame is built and sent, and while a new socket is opened and resumed."""
        self.opened_at = 0.0
        self.last_send = time.monotonic()
        self.reconnects = 0
        self.reconnect_times: list[float] = []
        self.progressed = False
        """Set by the client when this socket delivered something (audio, a transcript)."""
        self.closing = False
        """Set by a client that asked the server to close: that close is the end, not a loss."""
        self.closed = False
        self._keepalive: asyncio.Task[None] | None = None

    def _set(
        self, state: ConnectionState, attempt: int = 0, retry_in_s: float | None = None, reason: str = ""
    ) -> None:
        self.state = state
        change = StateChange(state, attempt, retry_in_s, reason)
        for listener in list(self.listeners):
            listener(change)

    async def _connect(self) -> ClientConnection:
        policy = self.policy
        timeouts: dict[str, Any] = {}  # no policy: websockets' defaults
        if policy is not None:
            timeouts = dict(
                ping_interval=policy.ping_interval,
                ping_timeout=policy.ping_timeout,
                open_timeout=policy.connect_timeout,
            )
        return await websockets.connect(  # open_timeout bounds DNS, TCP and the handshake together
            self.url,
            additional_headers=self.headers,
            max_size=MAX_FRAME_BYTES,
            ssl=self.ssl,
            compression=None,
            **timeouts,
        )

    async def open(self, reconnecting: bool = False) -> ClientConnection:
        """A new socket, retried with backoff under the policy (one attempt without one)."""
        policy = self.policy
        delays = backoff(policy.initial_s, policy.maximum_s) if policy else iter(())
        attempt = 0
        lost_at = time.perf_counter()
        while True:
            attempt += 1
            self._set(ConnectionState.RECONNECTING if reconnecting else ConnectionState.CONNECTING, attempt)
            try:
                ws = await self._connect()
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
                if policy is None or _refused(exc):
                    self._set(ConnectionState.FAILED, attempt, reason=str(exc))
                    raise
                policy.give_up.attempt_failed()
                if policy.give_up.give_up:
                    self._set(ConnectionState.FAILED, attempt, reason=str(exc))
                    raise ConnectionClosedError(f"gave up after {attempt} attempts: {exc}") from exc
                delay = next(delays)
                self._set(ConnectionState.RECONNECTING, attempt, retry_in_s=delay, reason=str(exc))
                await asyncio.sleep(delay)
                continue
            if policy is not None:
                policy.give_up.connected()
            self.ws = ws
            self.opened_at = self.last_send = time.monotonic()
            if reconnecting:
                self.reconnects += 1
                self.reconnect_times.append(time.perf_counter() - lost_at)
            self._set(ConnectionState.OPEN, attempt)
            return ws

    async def send(self, frame: str | Callable[[], str | None]) -> bool:
        """Send a frame (or build it under the lock, so a resume cannot overtake it); False when the
        socket is down (the session still logs a frame built then: its resume frames cover it)."""
        async with self.lock:
            return await self.send_now(frame() if callable(frame) else frame)

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
        if self.policy is None or self.closed or self.closing:
            return False
        if decide(lost.code, error) is Decision.FAIL:
            self._set(ConnectionState.FAILED, reason=error or lost.reason)
            return False
        self.policy.give_up.connection_ended(time.monotonic() - self.opened_at, self.progressed)
        self.progressed = False
        if self.policy.give_up.give_up:
            self._set(ConnectionState.FAILED, reason=lost.reason)
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
        self._set(ConnectionState.CLOSED)


class ConnectionOptions(TypedDict, total=False):
    """How every client reaches its server: ``Connection``'s options."""

    api_key: str | None
    ssl: ssl_module.SSLContext | None
    cafile: str | None
    reconnect: ReconnectPolicy | bool | None
    on_state: Callable[[StateChange], None] | None


class Resumes(Protocol):
    def resume(self) -> list[str]: ...


S = TypeVar("S", bound=Resumes)
E = TypeVar("E")
ServerErrorEvent = ErrorReceived | TranscriptError


class Client(Generic[S, E]):
    """What every client shares: the URL, one ``Connection``, ``async with``, opening a socket
    and sending the session's resume frames under the lock (a frame sent meanwhile waits for them),
    the reader that reconnects, and ``close``."""

    protocol: S
    close_ends = True
    """A normal close is the end of the stream (else a ``ConnectionClosedError``)."""

    def __init__(
        self, base_url: str, path: str, query: dict[str, object], **options: Unpack[ConnectionOptions]
    ) -> None:
        """``query``'s parameters that are None, False or "" are left out; True is ``true``."""
        kept = {k: v for k, v in query.items() if v is not None and v is not False and v != ""}
        given = urlencode({k: "true" if v is True else str(v) for k, v in kept.items()})
        self.url = f"{ws_url(base_url).rstrip('/')}{path}?{given}"
        self.link = Connection(self.url, **options)

    @property
    def state(self) -> ConnectionState:
        return self.link.state

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> object:
        await self._open(reconnecting=False)
        return None

    async def _open(self, reconnecting: bool) -> None:
        async with self.link.lock:
            ws = await self.link.open(reconnecting)
            for frame in await self._resume(ws, reconnecting):
                await self.link.send_now(frame)

    async def _resume(self, ws: ClientConnection, reconnecting: bool) -> list[str]:
        """The frames that start (or resume) the stream on a new socket ``ws``."""
        return self.protocol.resume()

    async def _send(self, frame: str | Callable[[], str | None]) -> None:
        """``Connection.send``, but "not connected" when there is no socket and no policy."""
        if self.link.ws is None and self.link.policy is None:
            raise ConnectionClosedError("not connected")
        await self.link.send(frame)

    def _receive(self, frame: str | bytes) -> E | ServerErrorEvent | None:
        """The event a frame makes (None: nothing for the application)."""
        raise NotImplementedError

    async def _events(self) -> AsyncIterator[E]:
        """Every event of every socket's frames, reconnecting under the policy. A server error
        frame is kept until the close that follows, which decides: retry, or raise it typed."""
        while not self.link.closed:
            if self.link.ws is None:
                await self._open(reconnecting=True)
            error: ServerErrorEvent | None = None
            lost = Lost(None, "")
            async for frame in self.link.frames():
                if isinstance(frame, Lost):
                    lost = frame
                    break
                event = self._receive(frame)
                if isinstance(event, ServerErrorEvent):
                    error = event
                elif event is not None:
                    yield event
            if self.link.should_retry(lost, error.error if error else None):
                continue
            if error is not None:
                raise server_error(error.error, error.message, error.code)
            if self.close_ends and (self.link.closed or lost.code == 1000):
                return
            unfinished = "" if self.close_ends else " before isFinal"
            raise ConnectionClosedError(f"connection closed{unfinished}: {lost.code} {lost.reason}".strip())

    async def close(self) -> None:
        await self.link.close()

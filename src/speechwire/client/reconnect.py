"""Reconnection policy: backoff with full jitter, quick-failure give-up, and connection states.

Each policy in one line, with its reason:
- Backoff doubles from ``initial`` to ``maximum`` with full jitter: many clients cut by the same
  fault must not come back in lock-step and knock the server over again.
- Give up after ``quick_failures`` connections in a row that each die within ``quick_window_s``
  without delivering anything: a server that accepts and then drops us at once (bad key, bad
  request, crash loop) will not heal by retrying, while a flaky network that lets work through does.
- Keep-alive is the protocol's own message, sent only when idle: it resets the server's
  inactivity timer without adding traffic to a busy stream.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


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


def monotonic() -> float:
    return time.monotonic()

"""Per-caller limits: how fast one key may open sessions, and how many it may hold at once.

Why per key and not only per server: one runaway client (a retry loop, a leaked key) must not
take the capacity every other caller paid for. A refused caller gets ``rate_limited`` with close
1013 (try again later), so well-behaved clients back off instead of failing for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class _Bucket:
    tokens: float
    updated: float
    open_sessions: int = 0


class Limiter(Protocol):
    """Per-caller session budgets (in memory here; ``shared_store`` for replicas)."""

    async def acquire(self, caller: str) -> str | None: ...

    async def release(self, caller: str) -> None: ...


OPEN_REFUSED = "Too many open sessions for this key (at most {})."
RATE_REFUSED = "Too many new sessions for this key (at most {:g} a minute)."


@dataclass
class RateLimiter:
    """Token bucket of new sessions per caller (``per_minute``, bursts of ``burst``) plus a cap
    on open sessions per caller. In memory: one process's view."""

    per_minute: float = 120.0
    burst: int = 20
    max_open: int = 16
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    async def acquire(self, caller: str) -> str | None:
        """Take a session slot for ``caller``; the reason it is refused, or None."""
        now = self.clock()
        bucket = self._buckets.setdefault(caller, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_minute / 60)
        bucket.updated = now
        if bucket.open_sessions >= self.max_open:
            return OPEN_REFUSED.format(self.max_open)
        if bucket.tokens < 1:
            return RATE_REFUSED.format(self.per_minute)
        bucket.tokens -= 1
        bucket.open_sessions += 1
        return None

    async def release(self, caller: str) -> None:
        bucket = self._buckets.get(caller)
        if bucket is None:
            return
        bucket.open_sessions = max(0, bucket.open_sessions - 1)
        if bucket.open_sessions == 0 and bucket.tokens >= self.burst:
            del self._buckets[caller]  # idle and full: forget it, memory stays bounded

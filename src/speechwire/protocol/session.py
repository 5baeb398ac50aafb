"""The one interface every server session implements, so one driver can run them all.

A server session is the sans-I/O core of one WebSocket (TTS ``stream-input``, TTS
``multi-stream-input``, Scribe realtime STT): it is fed client frames and the clock, and answers
with typed events or a ``ProtocolError``. It never reads a socket, sleeps or looks at a clock of
its own; ``server/ws/driver.py`` does those things for every route the same way (python-websockets'
split between ``protocol.py`` and ``asyncio/connection.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

EventT_co = TypeVar("EventT_co", covariant=True)


class ServerSession(Protocol[EventT_co]):
    """What a route's driver needs of a session.

    ``receive`` takes one frame (text or bytes, as the socket gave it) and ``now`` (seconds on any
    monotonic clock); it returns what the route must do, or raises ``ProtocolError`` — the driver
    then sends that error's frame and closes with its code.

    ``deadline`` is the next moment something is due without a frame arriving (an inactivity
    timeout, a context to expire), or None when nothing is; the driver calls ``expire(now)`` once
    that moment has passed, which returns events or raises ``ProtocolError`` like ``receive``.
    """

    @property
    def deadline(self) -> float | None: ...

    def receive(self, frame: str | bytes, now: float) -> Sequence[EventT_co]: ...

    def expire(self, now: float) -> Sequence[EventT_co]: ...

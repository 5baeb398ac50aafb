"""The one loop that runs a sans-I/O server session on a WebSocket, for every route: ``drive``
opens the session, feeds it frames and deadlines, turns a ``ProtocolError`` into the protocol's
error frame and close, ends quietly when the client leaves or stops reading, and cleans up once;
a ``Route`` only says what each event means.

Why a receive future kept across waits, not ``wait_for(ws.receive())``: a deadline that passes
while a frame is half read would cancel the read and lose the frame; here the same read is
awaited again after ``expire``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.websockets import WebSocketDisconnect

from speechwire.protocol.errors import ProtocolError
from speechwire.protocol.session import ServerSession
from speechwire.server.ws.session_socket import SessionSocket, SlowConsumer

EventT = TypeVar("EventT")
EventT_contra = TypeVar("EventT_contra", contravariant=True)
log = logging.getLogger("speechwire.session")


class Route(Generic[EventT_contra]):
    """A route's side of a session: what each event means. The defaults read until the socket
    ends, with no task and nothing to open or close.

    ``on_open`` runs before the first frame is read (the STT route's ``session_started``).
    ``reading`` turns False once the route wants no more frames (TTS after end of input: the
    speaker finishes and closes; ``close_socket``). ``task`` is work that ends the session when it
    ends (the TTS speaker: slow consumer, engine failure, or its final and close); the driver
    waits for it after reading stops and cancels it before an error frame. ``on_close`` runs once,
    however the session ended.
    """

    reading = True
    task: asyncio.Task[None] | None = None

    async def on_open(self) -> None:
        pass

    async def on_event(self, event: EventT_contra) -> None:
        raise NotImplementedError

    async def on_close(self) -> None:
        pass


Opener = Callable[[], tuple[ServerSession[EventT], Route[EventT]]]


@dataclass(slots=True)
class ReadPacer:
    """A token bucket over the bytes one socket feeds its session: past ``burst``, frames are read
    at ``rate`` bytes a second. Why: every session shares one event loop, and a client sending
    megabytes a second (text it never needs voiced) would otherwise take the loop's time from the
    others (issue 14). Not reading lets the transport's queue fill, so TCP slows the sender."""

    rate: float
    burst: float
    tokens: float | None = None
    at: float = 0.0

    def pause_after(self, size: int, now: float) -> float:
        """Seconds to wait before reading the next frame, after one of ``size`` bytes (a debt is
        carried, so the wait itself pays for it)."""
        tokens = self.burst if self.tokens is None else self.tokens + (now - self.at) * self.rate
        self.tokens, self.at = min(self.burst, tokens) - size, now
        return max(0.0, -self.tokens / self.rate)


async def drive(
    sock: SessionSocket, open_session: Opener[EventT], internal_error: ProtocolError, pacer: ReadPacer
) -> None:
    """Run one session on ``sock`` until it ends.

    ``open_session`` builds the session and its handler (raising ``ProtocolError`` for a bad
    request); ``internal_error`` is what the client is told when a handler fails unexpectedly;
    ``pacer`` says how fast frames are read.
    """
    try:
        session, handler = open_session()
    except ProtocolError as exc:
        log.info("session rejected: %s", exc.error)
        await sock.fail(exc)
        return
    receiver: asyncio.Future[Any] | None = None
    try:
        await handler.on_open()
        while handler.reading:
            receiver = receiver or asyncio.ensure_future(sock.ws.receive())
            task = handler.task
            waiting: set[asyncio.Future[Any]] = {receiver} if task is None else {receiver, task}
            deadline = session.deadline
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if task is not None and task in done:
                return  # the handler's work ended the session (slow consumer, engine failure)
            if receiver in done:
                message, receiver = receiver.result(), None
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                frame = text if text is not None else message.get("bytes") or b""
                now = time.monotonic()
                pause = pacer.pause_after(len(frame), now)
                events = session.receive(frame, now)
            else:
                pause, events = 0.0, session.expire(time.monotonic())
            for event in events:
                await handler.on_event(event)
            if pause:
                await asyncio.sleep(pause)
        if handler.task is not None:
            await handler.task
    except ProtocolError as exc:
        log.info("session closed on %s: %s", exc.error, exc.message)
        if handler.task is not None:
            handler.task.cancel()
        await sock.fail(exc)
    except (WebSocketDisconnect, SlowConsumer):
        pass
    except Exception:
        log.exception("session failed")
        await sock.fail(internal_error)
    finally:
        if receiver is not None and not receiver.done():
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
        await handler.on_close()

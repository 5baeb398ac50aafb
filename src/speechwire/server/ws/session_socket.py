"""One accepted WebSocket as a session sees it: serialised sends with a deadline, one close.

Why a send deadline: a client that stops reading fills the TCP buffers, and every further send
would wait forever while its session holds memory and a place. After ``send_timeout_s`` the
session is ended instead (the close cannot reach such a client; the connection is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketState

from speechwire.protocol.errors import ProtocolError


class SlowConsumer(Exception):
    """The client did not take a message within the send deadline."""


@dataclass(eq=False)  # kept in sets: one socket is equal only to itself
class SessionSocket:
    ws: WebSocket
    error_frame: Callable[[ProtocolError], dict[str, Any]]
    send_timeout_s: float = 10.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    on_fail: Callable[[ProtocolError], object] = lambda error: None
    """Told of every error this session sends (metrics count them)."""

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            if self.closed:
                return
            text = json.dumps(message, separators=(",", ":"))
            try:
                await asyncio.wait_for(self.ws.send_text(text), self.send_timeout_s)
            except TimeoutError:
                self.closed = True
                raise SlowConsumer(f"client took no data for {self.send_timeout_s:g} s") from None

    async def close(self, code: int, reason: str = "") -> None:
        async with self.lock:
            if self.closed:
                return
            self.closed = True
            if self.ws.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.ws.close(code, reason[:120]), 2.0)

    async def fail(self, error: ProtocolError) -> None:
        """Send the protocol's error frame, then close with its code."""
        self.on_fail(error)
        with contextlib.suppress(Exception):
            await self.send(self.error_frame(error))
        await self.close(error.code, error.message)

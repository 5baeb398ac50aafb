"""``MultiContextTTS``: one ``multi-stream-input`` socket, several contexts, and barge-in.

``close_context()`` ends a context's input (its audio and final still come: the end of a turn);
``interrupt()`` also cancels it, so its late audio is dropped, starts the next context and records
the time to that context's first audio. Frames and those rules, with their reasons, are
``protocol.multi_client.MultiClientSession``; with ``reconnect=`` a lost socket is replaced and
every unfinished context resumed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Unpack

from speechwire.client.errors import ConnectionClosedError
from speechwire.client.reconnect import Client, ConnectionOptions
from speechwire.protocol.multi_client import (
    ContextAudio,
    ContextFailed,
    ContextFinished,
    MultiClientSession,
    MultiEvent,
)

__all__ = ["ContextAudio", "ContextFailed", "ContextFinished", "MultiContextTTS", "MultiLatency"]


@dataclass
class MultiLatency:
    interrupt_to_first_audio: list[float] = field(default_factory=list)
    first_audio: list[float] = field(default_factory=list)
    """Per context: first text sent → first audio."""


class MultiContextTTS(Client[MultiClientSession, ContextAudio | ContextFailed | ContextFinished]):
    """Use as ``async with MultiContextTTS(url, "joe") as tts:``; iterate for audio and finals."""

    def __init__(
        self,
        base_url: str,
        voice_id: str = "joe",
        *,
        output_format: str = "pcm_22050",
        model_id: str | None = None,
        inactivity_timeout: int | None = None,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        query: dict[str, object] = {
            "output_format": output_format,
            "model_id": model_id,
            "inactivity_timeout": inactivity_timeout,
        }
        super().__init__(base_url, f"/v1/text-to-speech/{voice_id}/multi-stream-input", query, **connection)
        self.protocol = MultiClientSession()
        self.latency = MultiLatency()
        self._started_at: dict[str, float] = {}
        self._interrupted_at: dict[str, float] = {}

    @property
    def current(self) -> str | None:
        return self.protocol.current

    @property
    def cancelled_contexts(self) -> set[str]:
        """Interrupted, final not yet received: their audio is dropped."""
        return self.protocol.cancelled_contexts

    @property
    def dropped_chunks(self) -> int:
        return self.protocol.dropped_chunks

    async def start_context(
        self, text: str = " ", *, flush: bool = False, voice_settings: dict[str, Any] | None = None
    ) -> str:
        """Open a new context (it becomes the current one) with optional first text.

        Its id is taken and its frame built under the connection's lock, so contexts go out in
        the order they are started, and one started during a reconnect is sent once (not also
        by the resume)."""
        started: list[str] = []

        def frame() -> str:
            cid, first = self.protocol.start_context(text, flush=flush, voice_settings=voice_settings)
            if text.strip():
                self._started_at[cid] = time.perf_counter()
            started.append(cid)
            return first

        await self._send(frame)
        return started[0]

    async def send(self, text: str, *, flush: bool = False, context_id: str | None = None) -> None:
        cid = context_id or self.current
        if cid is None:
            cid = await self.start_context()
        if text.strip():
            self._started_at.setdefault(cid, time.perf_counter())
        await self._send(lambda: self.protocol.text(text, flush=flush, context_id=cid))

    async def flush(self, context_id: str | None = None) -> None:
        await self._send(lambda: self.protocol.flush(context_id))

    async def keep_alive(self, context_id: str | None = None) -> None:
        """The per-context keep-alive: an empty text resets that context's inactivity clock."""
        await self._send(self.protocol.keep_alive(context_id))

    async def close_context(self, context_id: str | None = None, *, cancel: bool = False) -> None:
        """End a context's input: its audio still comes, then its final — unless ``cancel``,
        which drops every chunk of it that arrives from now on (barge-in)."""
        await self._send(lambda: self.protocol.close_context(context_id, cancel=cancel))

    async def interrupt(self, text: str | None = None, *, flush: bool = True) -> str:
        """Barge-in: close and cancel the current context (its late audio is dropped), start the next."""
        now = time.perf_counter()
        await self.close_context(cancel=True)
        cid = await self.start_context(text or " ", flush=flush and bool(text))
        self._interrupted_at[cid] = now
        return cid

    async def close_socket(self) -> None:
        """Every context closes (its audio still comes), then the server closes with 1000."""
        self.link.closing = True
        await self._send(self.protocol.close_socket())

    def _receive(self, frame: str | bytes) -> MultiEvent | None:
        return self.protocol.receive(frame)

    async def __aiter__(self) -> AsyncIterator[ContextAudio | ContextFailed | ContextFinished]:
        if self.link.ws is None:
            raise ConnectionClosedError("not connected")
        async for event in self._events():
            if isinstance(event, ContextAudio):
                self.link.progressed = True
                now = time.perf_counter()
                if event.context_id in self._interrupted_at:
                    self.latency.interrupt_to_first_audio.append(
                        now - self._interrupted_at.pop(event.context_id)
                    )
                if event.context_id in self._started_at:
                    self.latency.first_audio.append(now - self._started_at.pop(event.context_id))
            yield event

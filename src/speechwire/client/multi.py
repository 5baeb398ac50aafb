"""``MultiContextTTS``: one ``multi-stream-input`` socket, several contexts, and barge-in.

``close_context()`` ends a context's input; the server still voices all the text it was sent
and then sends its final, so that audio keeps arriving and is yielded (the end of a turn).
``interrupt()`` closes the current context *and cancels it here*: the server sends the rest of
its audio anyway (upstream does too), and this client drops every chunk of a cancelled context
until its final, then starts the next context and records the time from the interrupt to the
new context's first audio.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection

from speechwire.audio.alignment import CharAlignment
from speechwire.client.errors import ConnectionClosedError, server_error
from speechwire.client.tts import MAX_FRAME_BYTES, _ws_url
from speechwire.protocol.tts import AudioReceived, ErrorReceived, FinalReceived, parse_server_message


@dataclass(frozen=True, slots=True)
class ContextAudio:
    context_id: str
    audio: bytes
    alignment: CharAlignment | None


@dataclass(frozen=True, slots=True)
class ContextFinished:
    context_id: str


@dataclass
class MultiLatency:
    interrupt_to_first_audio: list[float] = field(default_factory=list)
    first_audio: list[float] = field(default_factory=list)
    """Per context: first text sent → first audio."""


class MultiContextTTS:
    """Use as ``async with MultiContextTTS(url, "joe") as tts:``; iterate for audio and finals."""

    def __init__(
        self,
        base_url: str,
        voice_id: str = "joe",
        *,
        output_format: str = "pcm_22050",
        model_id: str | None = None,
        api_key: str | None = None,
        inactivity_timeout: int | None = None,
    ) -> None:
        query = {"output_format": output_format}
        if model_id:
            query["model_id"] = model_id
        if inactivity_timeout is not None:
            query["inactivity_timeout"] = str(inactivity_timeout)
        path = f"/v1/text-to-speech/{voice_id}/multi-stream-input"
        self.url = f"{_ws_url(base_url).rstrip('/')}{path}?{urlencode(query)}"
        self._headers = {"xi-api-key": api_key} if api_key else None
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self.current: str | None = None
        self.open_contexts: set[str] = set()
        self.closed_contexts: set[str] = set()
        """Closed, final not yet received: their audio is still yielded (end of turn)."""
        self.cancelled_contexts: set[str] = set()
        """Interrupted, final not yet received: their audio is dropped."""
        self.latency = MultiLatency()
        self._started_at: dict[str, float] = {}
        self._interrupted_at: dict[str, float] = {}
        self.dropped_chunks = 0

    async def __aenter__(self) -> MultiContextTTS:
        self._ws = await websockets.connect(
            self.url, additional_headers=self._headers, max_size=MAX_FRAME_BYTES, compression=None
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            raise ConnectionClosedError("not connected")
        await self._ws.send(json.dumps(message))

    async def start_context(
        self, text: str = " ", *, flush: bool = False, voice_settings: dict[str, Any] | None = None
    ) -> str:
        """Open a new context (it becomes the current one) with optional first text."""
        cid = f"ctx-{next(self._ids)}"
        message: dict[str, Any] = {"text": text, "context_id": cid}
        if flush:
            message["flush"] = True
        if voice_settings:
            message["voice_settings"] = voice_settings
        self.open_contexts.add(cid)
        self.current = cid
        if text.strip():
            self._started_at[cid] = time.perf_counter()
        await self._send(message)
        return cid

    async def send(self, text: str, *, flush: bool = False, context_id: str | None = None) -> None:
        cid = context_id or self.current
        if cid is None:
            cid = await self.start_context()
        if text.strip():
            self._started_at.setdefault(cid, time.perf_counter())
        message: dict[str, Any] = {"text": text, "context_id": cid}
        if flush:
            message["flush"] = True
        await self._send(message)

    async def flush(self, context_id: str | None = None) -> None:
        await self._send({"context_id": context_id or self.current, "flush": True})

    async def keep_alive(self, context_id: str | None = None) -> None:
        """The per-context keep-alive: an empty text resets that context's inactivity clock."""
        await self._send({"context_id": context_id or self.current, "text": ""})

    async def close_context(self, context_id: str | None = None, *, cancel: bool = False) -> None:
        """End a context's input: its audio still comes, then its final — unless ``cancel``,
        which drops every chunk of it that arrives from now on (barge-in)."""
        cid = context_id or self.current
        if cid is None:
            return
        self.open_contexts.discard(cid)
        (self.cancelled_contexts if cancel else self.closed_contexts).add(cid)
        if cid == self.current:
            self.current = None
        await self._send({"context_id": cid, "close_context": True})

    async def interrupt(self, text: str | None = None, *, flush: bool = True) -> str:
        """Barge-in: close and cancel the current context (its late audio is dropped), start the next."""
        now = time.perf_counter()
        await self.close_context(cancel=True)
        cid = await self.start_context(text or " ", flush=flush and bool(text))
        self._interrupted_at[cid] = now
        return cid

    async def close_socket(self) -> None:
        await self._send({"close_socket": True})

    async def __aiter__(self) -> AsyncIterator[ContextAudio | ContextFinished]:
        if self._ws is None:
            raise ConnectionClosedError("not connected")
        try:
            async for frame in self._ws:
                data = json.loads(frame)
                cid = str(data.get("contextId") or data.get("context_id") or "")
                event = parse_server_message(frame)
                if isinstance(event, ErrorReceived):
                    raise server_error(event.error, event.message, event.code)
                if isinstance(event, FinalReceived):
                    self.open_contexts.discard(cid)
                    self.closed_contexts.discard(cid)
                    if cid in self.cancelled_contexts:
                        self.cancelled_contexts.discard(cid)
                        continue  # the interrupted context is over: nothing to report
                    yield ContextFinished(cid)
                    continue
                if isinstance(event, AudioReceived):
                    if cid in self.cancelled_contexts or (
                        cid not in self.open_contexts and cid not in self.closed_contexts
                    ):
                        self.dropped_chunks += 1  # late audio of an interrupted context: never played
                        continue
                    now = time.perf_counter()
                    if cid in self._interrupted_at:
                        self.latency.interrupt_to_first_audio.append(now - self._interrupted_at.pop(cid))
                    if cid in self._started_at:
                        self.latency.first_audio.append(now - self._started_at.pop(cid))
                    yield ContextAudio(cid, event.audio, event.alignment)
        except websockets.ConnectionClosedError as exc:
            raise ConnectionClosedError(f"connection closed: {exc}") from exc

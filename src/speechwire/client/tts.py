"""``TextToSpeechStream``: an asyncio client for ``stream-input``.

Send text as it arrives (say, tokens from an LLM), ``flush()`` at the end of a turn, ``end()``
when done, and iterate over audio chunks with their character timing. Time to first audio is
recorded in ``latency``.
"""

from __future__ import annotations

import contextlib
import json
import ssl as ssl_module
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection

from speechwire.audio.alignment import CharAlignment
from speechwire.client.errors import ConnectionClosedError, server_error
from speechwire.client.latency import LatencyRecorder
from speechwire.protocol.tts import AudioReceived, ErrorReceived, FinalReceived, parse_server_message

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""ElevenLabs frames reach 16 MB; a client must accept them."""


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Audio bytes in the stream's output format, and when each character in it is spoken."""

    audio: bytes
    alignment: CharAlignment | None


def _ws_url(base_url: str) -> str:
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://") :]
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :]
    return base_url


class TextToSpeechStream:
    """One ``stream-input`` WebSocket. Use as ``async with TextToSpeechStream(...) as tts:``."""

    def __init__(
        self,
        base_url: str,
        voice_id: str = "joe",
        *,
        model_id: str | None = None,
        output_format: str = "pcm_22050",
        api_key: str | None = None,
        voice_settings: dict[str, Any] | None = None,
        chunk_length_schedule: list[int] | None = None,
        auto_mode: bool = False,
        inactivity_timeout: int | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        query: dict[str, str] = {"output_format": output_format}
        if model_id:
            query["model_id"] = model_id
        if auto_mode:
            query["auto_mode"] = "true"
        if inactivity_timeout is not None:
            query["inactivity_timeout"] = str(inactivity_timeout)
        self.url = (
            f"{_ws_url(base_url).rstrip('/')}/v1/text-to-speech/{voice_id}/stream-input?{urlencode(query)}"
        )
        self.output_format = output_format
        self._api_key = api_key
        self._voice_settings = voice_settings
        self._schedule = chunk_length_schedule
        self._ssl = ssl
        self._ws: ClientConnection | None = None
        self.latency = LatencyRecorder()
        self.voiced_text = ""
        """Characters the server has voiced so far (from alignment)."""

    async def __aenter__(self) -> TextToSpeechStream:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        headers = {"xi-api-key": self._api_key} if self._api_key else None
        self._ws = await websockets.connect(
            self.url, additional_headers=headers, max_size=MAX_FRAME_BYTES, ssl=self._ssl, compression=None
        )
        init: dict[str, Any] = {"text": " "}
        if self._voice_settings:
            init["voice_settings"] = self._voice_settings
        if self._schedule:
            init["generation_config"] = {"chunk_length_schedule": self._schedule}
        await self._send(init)

    async def _send(self, message: dict[str, Any]) -> None:
        """Send a frame. If the server already closed, say nothing here: its error frame is still
        queued, and iterating raises it as a typed error (more useful than "connection closed")."""
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._socket().send(json.dumps(message))

    def _socket(self) -> ClientConnection:
        if self._ws is None:
            raise ConnectionClosedError("not connected")
        return self._ws

    async def send(self, text: str, *, flush: bool = False, try_trigger_generation: bool = False) -> None:
        """Send a piece of text; ``flush`` forces generation of everything buffered."""
        if not text:
            raise ValueError("use end() to finish; empty text ends the stream")
        message: dict[str, Any] = {"text": text}
        if flush:
            message["flush"] = True
        if try_trigger_generation:
            message["try_trigger_generation"] = True
        await self._send(message)
        if text.strip():
            self.latency.text_sent()

    async def flush(self) -> None:
        await self._send({"text": " ", "flush": True})

    async def keep_alive(self) -> None:
        """The protocol's keep-alive: a single space resets the server's inactivity timer."""
        await self._send({"text": " "})

    async def end(self) -> None:
        """End of input: the server voices what is buffered, sends ``isFinal`` and closes."""
        await self._send({"text": ""})

    async def __aiter__(self) -> AsyncIterator[AudioChunk]:
        ws = self._socket()
        try:
            async for frame in ws:
                event = parse_server_message(frame)
                if isinstance(event, ErrorReceived):
                    raise server_error(event.error, event.message, event.code)
                if isinstance(event, FinalReceived):
                    return
                if isinstance(event, AudioReceived):
                    if event.audio:
                        self.latency.audio_received()
                    if event.alignment is not None:
                        self.voiced_text += event.alignment.text
                    yield AudioChunk(event.audio, event.alignment)
        except websockets.ConnectionClosedError as exc:
            raise ConnectionClosedError(f"connection closed: {exc}") from exc
        raise ConnectionClosedError("connection closed before isFinal")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def synthesize(self, pieces: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[AudioChunk]:
        """Send ``pieces`` as they come (flushing at the end) while yielding audio as it arrives."""
        import asyncio

        async def feed() -> None:
            if isinstance(pieces, AsyncIterable):
                async for piece in pieces:
                    await self.send(piece)
            else:
                for piece in pieces:
                    await self.send(piece)
            await self.end()

        sender = asyncio.create_task(feed())
        try:
            async for chunk in self:
                yield chunk
            await sender
        finally:
            if not sender.done():
                sender.cancel()

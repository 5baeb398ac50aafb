"""``TextToSpeechStream``: an asyncio client for ``stream-input``, reconnecting if asked.

Send text as it arrives (say, tokens from an LLM), ``flush()`` at the end of a turn, ``end()``
when done, and iterate over audio chunks with their character timing. Time to first audio is
recorded in ``latency``. Frames are built and parsed by ``protocol.tts_client.TTSClientSession``;
with ``reconnect=`` a lost socket is replaced and the session's resume frames send only the
unvoiced rest, so each stretch of audio arrives exactly once.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from speechwire.audio.alignment import CharAlignment
from speechwire.client.errors import ConnectionClosedError, server_error
from speechwire.client.latency import LatencyRecorder
from speechwire.client.reconnect import (
    MAX_FRAME_BYTES,
    Connection,
    ConnectionState,
    GiveUpPolicy,
    Lost,
    ReconnectPolicy,
    StateChange,
    ws_url,
)
from speechwire.protocol.tts_client import ErrorReceived, FinalReceived, TTSClientSession

__all__ = ["MAX_FRAME_BYTES", "AudioChunk", "ResumableTextToSpeech", "TextToSpeechStream"]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Audio bytes in the stream's output format, and when each character in it is spoken."""

    audio: bytes
    alignment: CharAlignment | None


class TextToSpeechStream:
    """One ``stream-input`` stream. Use as ``async with TextToSpeechStream(...) as tts:``.

    ``wss://``/``https://`` URLs verify the server against the system trust store (or
    ``cafile``; ``ssl`` takes a ready context)."""

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
        cafile: str | None = None,
        single_use_token: str | None = None,
        reconnect: ReconnectPolicy | bool | None = None,
        on_state: Callable[[StateChange], None] | None = None,
        keepalive_s: float | None = None,
    ) -> None:
        query: dict[str, str] = {"output_format": output_format}
        if single_use_token:  # browsers cannot set headers: a short-lived token in the query
            query["single_use_token"] = single_use_token
        if model_id:
            query["model_id"] = model_id
        if auto_mode:
            query["auto_mode"] = "true"
        if inactivity_timeout is not None:
            query["inactivity_timeout"] = str(inactivity_timeout)
        path = f"/v1/text-to-speech/{voice_id}/stream-input?{urlencode(query)}"
        self.url = f"{ws_url(base_url).rstrip('/')}{path}"
        self.output_format = output_format
        self.protocol = TTSClientSession(voice_settings, chunk_length_schedule)
        self.link = Connection(
            self.url, api_key=api_key, ssl=ssl, cafile=cafile, reconnect=reconnect, on_state=on_state
        )
        self.keepalive_s = keepalive_s
        self.latency = LatencyRecorder()

    @property
    def state(self) -> ConnectionState:
        return self.link.state

    @property
    def voiced_text(self) -> str:
        """Characters the server has voiced so far (from alignment)."""
        return self.protocol.voiced_text

    @property
    def sent(self) -> str:
        """Every character sent after the first message, in order."""
        return self.protocol.log.sent

    async def __aenter__(self) -> TextToSpeechStream:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        await self._open(reconnecting=False)
        if self.keepalive_s:
            self.link.keep_alive(self.keepalive_s, self._keep_alive_unless_ended)

    async def _open(self, reconnecting: bool) -> None:
        async with self.link.lock:
            await self.link.open(reconnecting)
            for frame in self.protocol.resume():  # the first time: just the first message
                await self.link.send_now(frame)

    async def send(self, text: str, *, flush: bool = False, try_trigger_generation: bool = False) -> None:
        """Send a piece of text; ``flush`` forces generation of everything buffered.

        If the server already closed, nothing is said here: its error frame is still queued, and
        iterating raises it as a typed error (more useful than "connection closed")."""
        if not text:
            raise ValueError("use end() to finish; empty text ends the stream")
        await self.link.send(
            lambda: self.protocol.text(text, flush=flush, try_trigger_generation=try_trigger_generation)
        )
        if text.strip():
            self.latency.text_sent()

    async def flush(self) -> None:
        await self.link.send(self.protocol.flush)

    async def keep_alive(self) -> None:
        """The protocol's keep-alive: a single space resets the server's inactivity timer."""
        await self.link.send(self.protocol.keep_alive)

    async def _keep_alive_unless_ended(self) -> None:
        await self.link.send(lambda: None if self.protocol.ended else self.protocol.keep_alive())

    async def end(self) -> None:
        """End of input: the server voices what is buffered, sends ``isFinal`` and closes."""
        await self.link.send(self.protocol.end)

    async def finish(self, timeout: float = 10.0) -> list[AudioChunk]:  # noqa: ASYNC109
        """Graceful end: end input and collect the rest of the audio until ``isFinal`` (bounded).

        Returns the chunks that arrived; raises ``TimeoutError`` past ``timeout``."""
        await self.end()
        async with asyncio.timeout(timeout):
            return [chunk async for chunk in self]

    async def __aiter__(self) -> AsyncIterator[AudioChunk]:
        while not self.link.closed:
            if self.link.ws is None:
                await self._open(reconnecting=True)
            error: ErrorReceived | None = None
            lost = Lost(None, "")
            async for frame in self.link.frames():
                if isinstance(frame, Lost):
                    lost = frame
                    break
                event = self.protocol.receive(frame)
                if isinstance(event, ErrorReceived):
                    error = event  # the close that follows decides: retry, or raise it
                elif isinstance(event, FinalReceived):
                    await self.close()
                    return
                else:
                    self.link.progressed = True
                    if event.audio:
                        self.latency.audio_received()
                    yield AudioChunk(event.audio, event.alignment)
            if self.link.should_retry(lost, error.error if error else None):
                continue
            if error is not None:
                raise server_error(error.error, error.message, error.code)
            raise ConnectionClosedError(
                f"connection closed before isFinal: {lost.code} {lost.reason}".strip()
            )

    async def close(self) -> None:
        await self.link.close()

    async def synthesize(self, pieces: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[AudioChunk]:
        """Send ``pieces`` as they come (flushing at the end) while yielding audio as it arrives."""

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


class ResumableTextToSpeech(TextToSpeechStream):
    """``TextToSpeechStream`` with reconnection on (the name README and users know)."""

    def __init__(
        self,
        base_url: str,
        voice_id: str = "joe",
        *,
        give_up: GiveUpPolicy | None = None,
        connect_timeout: float = 5.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        policy = ReconnectPolicy(
            give_up or GiveUpPolicy(), 0.2, 8.0, connect_timeout, ping_interval, ping_timeout
        )
        super().__init__(base_url, voice_id, reconnect=options.pop("reconnect", policy), **options)

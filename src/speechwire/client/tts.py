"""``TextToSpeechStream``: an asyncio client for ``stream-input``, reconnecting if asked.

Send text as it arrives (say, tokens from an LLM), ``flush()`` at the end of a turn, ``end()``
when done, and iterate over audio chunks with their character timing. Time to first audio is
recorded in ``latency``. Frames are built and parsed by ``protocol.tts_client.TTSClientSession``;
with ``reconnect=`` a lost socket is replaced and the session's resume frames send only the
unvoiced rest, so each stretch of audio arrives exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Unpack

from speechwire.audio.alignment import CharAlignment
from speechwire.client.latency import LatencyRecorder
from speechwire.client.reconnect import MAX_FRAME_BYTES, Client, ConnectionOptions, resumable
from speechwire.protocol.tts_client import AudioReceived, FinalReceived, ServerEvent, TTSClientSession

__all__ = ["MAX_FRAME_BYTES", "AudioChunk", "ResumableTextToSpeech", "TextToSpeechStream"]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Audio bytes in the stream's output format, and when each character in it is spoken."""

    audio: bytes
    alignment: CharAlignment | None


class TextToSpeechStream(Client[TTSClientSession, AudioReceived | FinalReceived]):
    """One ``stream-input`` stream. Use as ``async with TextToSpeechStream(...) as tts:``."""

    close_ends = False  # the stream ends at isFinal

    def __init__(
        self,
        base_url: str,
        voice_id: str = "joe",
        *,
        model_id: str | None = None,
        output_format: str = "pcm_22050",
        voice_settings: dict[str, Any] | None = None,
        chunk_length_schedule: list[int] | None = None,
        auto_mode: bool = False,
        inactivity_timeout: int | None = None,
        single_use_token: str | None = None,
        keepalive_s: float | None = None,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        query: dict[str, object] = {
            "output_format": output_format,
            "single_use_token": single_use_token,  # browsers cannot set headers: a short-lived token
            "model_id": model_id,
            "auto_mode": auto_mode,
            "inactivity_timeout": inactivity_timeout,
        }
        super().__init__(base_url, f"/v1/text-to-speech/{voice_id}/stream-input", query, **connection)
        self.output_format = output_format
        self.protocol = TTSClientSession(voice_settings, chunk_length_schedule)
        self.keepalive_s = keepalive_s
        self.latency = LatencyRecorder()

    @property
    def voiced_text(self) -> str:
        """Characters the server has voiced so far (from alignment)."""
        return self.protocol.voiced_text

    @property
    def sent(self) -> str:
        """Every character sent after the first message, in order."""
        return self.protocol.log.sent

    async def connect(self) -> None:
        await super().connect()  # sends the first message
        if self.keepalive_s:
            self.link.keep_alive(self.keepalive_s, self._keep_alive_unless_ended)

    async def send(self, text: str, *, flush: bool = False, try_trigger_generation: bool = False) -> None:
        """Send a piece of text; ``flush`` forces generation of everything buffered.

        If the server already closed, nothing is said here: its error frame is still queued, and
        iterating raises it as a typed error (more useful than "connection closed"). Empty text
        raises ``ValueError``: it would end the stream (``end()`` does that)."""
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
        async for event in self._events():
            if isinstance(event, FinalReceived):
                await self.close()
                return
            self.link.progressed = True
            if event.audio:
                self.latency.audio_received()
            yield AudioChunk(event.audio, event.alignment)

    def _receive(self, frame: str | bytes) -> ServerEvent:
        return self.protocol.receive(frame)

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
    """``TextToSpeechStream`` with reconnection on (the name README and users know); ``give_up``,
    ``connect_timeout``, ``ping_interval`` and ``ping_timeout`` tune it."""

    def __init__(self, base_url: str, voice_id: str = "joe", **options: Any) -> None:
        super().__init__(base_url, voice_id, **resumable(options))

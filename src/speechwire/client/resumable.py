"""Clients that survive dropped connections without losing or repeating a word.

TTS: every character sent after the first message is logged; alignment says which characters
each audio chunk voices. After a reconnect only the unvoiced rest is sent again (with the same
flushes, and the end of input if it had been sent), so the application receives each stretch
of audio exactly once.

STT: audio since the last committed transcript is kept; after a reconnect it is sent again,
with the last committed text as ``previous_text``, so no speech is lost and no committed text
repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import websockets
from websockets.asyncio.client import ClientConnection

from speechwire.client.errors import ConnectionClosedError, ServerError, server_error
from speechwire.client.latency import LatencyRecorder
from speechwire.client.reconnect import ConnectionState, GiveUpPolicy, StateChange, StateTracker, backoff
from speechwire.client.stt import CommittedTranscript, PartialTranscript, TranscriptEvent
from speechwire.client.tts import MAX_FRAME_BYTES, AudioChunk, _ws_url
from speechwire.protocol.stt import input_audio_chunk
from speechwire.protocol.tts import AudioReceived, ErrorReceived, FinalReceived, parse_server_message

RETRYABLE_ERRORS = frozenset(
    {"internal_error", "resource_exhausted", "server_shutting_down", "queue_overflow"}
)
"""Server errors worth a reconnect; every other error is the caller's to fix and is raised."""


class _Reconnecting:
    """Shared connect-with-backoff loop and state events for the resumable clients."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None,
        give_up: GiveUpPolicy | None,
        on_state: Callable[[StateChange], None] | None,
        connect_timeout: float,
        ping_interval: float,
        ping_timeout: float,
    ) -> None:
        self.url = url
        self.headers = headers
        self.policy = give_up or GiveUpPolicy()
        self.states = StateTracker()
        if on_state is not None:
            self.states.listeners.append(on_state)
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.ws: ClientConnection | None = None
        self.opened_at = 0.0
        self.reconnects = 0
        self.reconnect_times: list[float] = []
        self.progressed = False
        """Set by the client when this connection delivered something (audio, a transcript)."""

    async def open(self, reconnecting: bool) -> ClientConnection:
        delays = backoff()
        attempt = 0
        lost_at = time.perf_counter()
        while True:
            attempt += 1
            self.states.set(
                StateChange(
                    ConnectionState.RECONNECTING if reconnecting else ConnectionState.CONNECTING, attempt
                )
            )
            try:
                ws = await asyncio.wait_for(
                    websockets.connect(
                        self.url,
                        additional_headers=self.headers,
                        max_size=MAX_FRAME_BYTES,
                        compression=None,
                        ping_interval=self.ping_interval,
                        ping_timeout=self.ping_timeout,
                        open_timeout=self.connect_timeout,
                    ),
                    self.connect_timeout + 1,
                )
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
                self.policy.attempt_failed()
                if self.policy.give_up:
                    self.states.set(StateChange(ConnectionState.FAILED, attempt, reason=str(exc)))
                    raise ConnectionClosedError(f"gave up after {attempt} attempts: {exc}") from exc
                delay = next(delays)
                self.states.set(
                    StateChange(ConnectionState.RECONNECTING, attempt, retry_in_s=delay, reason=str(exc))
                )
                await asyncio.sleep(delay)
                continue
            self.policy.connected()
            self.ws = ws
            self.opened_at = time.monotonic()
            if reconnecting:
                self.reconnects += 1
                self.reconnect_times.append(time.perf_counter() - lost_at)
            self.states.set(StateChange(ConnectionState.OPEN, attempt))
            return ws

    def lost(self, reason: str) -> None:
        self.policy.connection_ended(time.monotonic() - self.opened_at, self.progressed)
        self.progressed = False
        self.ws = None
        if self.policy.give_up:
            self.states.set(StateChange(ConnectionState.FAILED, reason=reason))
            raise ConnectionClosedError(f"gave up: connections keep dying quickly ({reason})")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None
        self.states.set(StateChange(ConnectionState.CLOSED))


class ResumableTextToSpeech:
    """``stream-input`` that reconnects and resumes: iterate it for audio, each stretch once."""

    def __init__(
        self,
        base_url: str,
        voice_id: str = "joe",
        *,
        output_format: str = "pcm_22050",
        model_id: str | None = None,
        api_key: str | None = None,
        voice_settings: dict[str, Any] | None = None,
        inactivity_timeout: int | None = None,
        give_up: GiveUpPolicy | None = None,
        on_state: Callable[[StateChange], None] | None = None,
        connect_timeout: float = 5.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 5.0,
        keepalive_s: float | None = None,
        single_use_token: str | None = None,
    ) -> None:
        query = {"output_format": output_format}
        if single_use_token:  # browsers cannot set headers: a short-lived token in the query
            query["single_use_token"] = single_use_token
        if model_id:
            query["model_id"] = model_id
        if inactivity_timeout is not None:
            query["inactivity_timeout"] = str(inactivity_timeout)
        url = f"{_ws_url(base_url).rstrip('/')}/v1/text-to-speech/{voice_id}/stream-input?{urlencode(query)}"
        headers = {"xi-api-key": api_key} if api_key else None
        self.link = _Reconnecting(
            url, headers, give_up, on_state, connect_timeout, ping_interval, ping_timeout
        )
        self.voice_settings = voice_settings
        self.keepalive_s = keepalive_s
        self.sent = ""  # every character sent after the first message, in order
        self.flushed_upto = 0
        self.ended = False
        self.voiced = 0  # characters of ``sent`` voiced by audio received
        self.latency = LatencyRecorder()
        self._lock = asyncio.Lock()
        self._last_send = time.monotonic()
        self._keepalive_task: asyncio.Task[None] | None = None

    @property
    def state(self) -> ConnectionState:
        return self.link.states.state

    async def __aenter__(self) -> ResumableTextToSpeech:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        async with self._lock:
            await self._open(reconnecting=False)
        if self.keepalive_s:
            self._keepalive_task = asyncio.create_task(self._keepalive())

    async def _open(self, reconnecting: bool) -> None:
        ws = await self.link.open(reconnecting)
        init: dict[str, Any] = {"text": " "}
        if self.voice_settings:
            init["voice_settings"] = self.voice_settings
        await ws.send(json.dumps(init))
        # Resume: the unvoiced rest, with the flushes and end of input it had.
        rest_flushed = self.sent[self.voiced : max(self.voiced, self.flushed_upto)]
        rest_open = self.sent[max(self.voiced, self.flushed_upto) :]
        if rest_flushed.strip():
            await ws.send(json.dumps({"text": rest_flushed, "flush": True}))
        if rest_open:
            await ws.send(json.dumps({"text": rest_open}))
        if self.ended:
            await ws.send(json.dumps({"text": ""}))
        self._last_send = time.monotonic()

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self.link.ws
        if ws is None:
            return  # reconnecting: the resend after it covers this text
        try:
            await ws.send(json.dumps(message))
            self._last_send = time.monotonic()
        except websockets.ConnectionClosed:
            pass  # the reader sees the close and resumes

    async def send(self, text: str, *, flush: bool = False) -> None:
        if not text:
            raise ValueError("use end() to finish")
        async with self._lock:
            self.sent += text
            if flush:
                self.flushed_upto = len(self.sent)
            if text.strip():
                self.latency.text_sent()
            await self._send({"text": text, "flush": True} if flush else {"text": text})

    async def flush(self) -> None:
        await self.send(" ", flush=True)

    async def end(self) -> None:
        async with self._lock:
            self.ended = True
            self.flushed_upto = len(self.sent)
            await self._send({"text": ""})

    async def finish(self, timeout: float = 10.0) -> list[AudioChunk]:  # noqa: ASYNC109
        """Graceful end: end input and collect the rest of the audio until ``isFinal`` (bounded).

        Returns the chunks that arrived; raises ``TimeoutError`` past ``timeout``."""
        await self.end()
        chunks: list[AudioChunk] = []
        async with asyncio.timeout(timeout):
            async for chunk in self:
                chunks.append(chunk)
        return chunks

    async def _keepalive(self) -> None:
        """The protocol's keep-alive (a single space) whenever nothing was sent for a while."""
        assert self.keepalive_s is not None
        while not self.ended:
            await asyncio.sleep(self.keepalive_s / 4)
            if time.monotonic() - self._last_send >= self.keepalive_s:
                async with self._lock:
                    if not self.ended:
                        self.sent += " "
                        await self._send({"text": " "})

    async def __aiter__(self) -> AsyncIterator[AudioChunk]:
        while True:
            ws = self.link.ws
            if ws is None:
                async with self._lock:
                    await self._open(reconnecting=True)
                continue
            try:
                async for frame in ws:
                    event = parse_server_message(frame)
                    if isinstance(event, ErrorReceived):
                        if event.error in RETRYABLE_ERRORS:
                            raise websockets.ConnectionClosedError(None, None)
                        raise server_error(event.error, event.message, event.code)
                    if isinstance(event, FinalReceived):
                        await self.close()
                        return
                    if isinstance(event, AudioReceived):
                        self.link.progressed = True
                        if event.alignment is not None:
                            self.voiced += len(event.alignment.chars)
                        if event.audio:
                            self.latency.audio_received()
                        yield AudioChunk(event.audio, event.alignment)
                raise websockets.ConnectionClosedError(None, None)  # closed without isFinal
            except (websockets.ConnectionClosed, OSError) as exc:
                self.link.lost(str(exc))

    async def close(self) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        await self.link.close()


class ResumableTranscriber:
    """Realtime STT that reconnects and re-sends uncommitted audio. Events via ``events()``."""

    def __init__(
        self,
        base_url: str,
        *,
        model_id: str = "scribe_v2_realtime",
        commit_strategy: str = "vad",
        vad_silence_threshold_secs: float | None = None,
        api_key: str | None = None,
        give_up: GiveUpPolicy | None = None,
        on_state: Callable[[StateChange], None] | None = None,
        connect_timeout: float = 5.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 5.0,
        token: str | None = None,
    ) -> None:
        query = {"model_id": model_id, "audio_format": "pcm_16000", "commit_strategy": commit_strategy}
        if token:  # a single-use token, for browsers that cannot set headers
            query["token"] = token
        if vad_silence_threshold_secs is not None:
            query["vad_silence_threshold_secs"] = str(vad_silence_threshold_secs)
        url = f"{_ws_url(base_url).rstrip('/')}/v1/speech-to-text/realtime?{urlencode(query)}"
        headers = {"xi-api-key": api_key} if api_key else None
        self.link = _Reconnecting(
            url, headers, give_up, on_state, connect_timeout, ping_interval, ping_timeout
        )
        self.pending: list[npt.NDArray[np.int16]] = []  # audio since the last committed transcript
        self.last_committed = ""
        self._lock = asyncio.Lock()
        self._fresh = True  # the next chunk is the first of its connection

    @property
    def state(self) -> ConnectionState:
        return self.link.states.state

    async def connect(self) -> None:
        async with self._lock:
            await self._open(reconnecting=False)

    async def _open(self, reconnecting: bool) -> None:
        ws = await self.link.open(reconnecting)
        started = json.loads(await ws.recv())
        if started.get("message_type") != "session_started":
            raise server_error(str(started.get("message_type")), str(started.get("error", started)))
        self._fresh = True
        for chunk in self.pending:
            await self._send_chunk(ws, chunk)

    def _message(self, chunk: npt.NDArray[np.int16]) -> str:
        previous = self.last_committed[-50:] if self._fresh and self.last_committed else None
        self._fresh = False
        return json.dumps(input_audio_chunk(chunk.astype("<i2").tobytes(), 16000, previous_text=previous))

    async def _send_chunk(self, ws: ClientConnection, chunk: npt.NDArray[np.int16]) -> None:
        await ws.send(self._message(chunk))

    async def send_audio(self, chunk: npt.NDArray[np.int16]) -> None:
        async with self._lock:
            self.pending.append(chunk)
            ws = self.link.ws
            if ws is not None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await self._send_chunk(ws, chunk)

    async def commit(self) -> None:
        async with self._lock:
            ws = self.link.ws
            if ws is not None and self.pending:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(json.dumps(input_audio_chunk(b"", 16000, commit=True)))

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        while True:
            ws = self.link.ws
            if ws is None:
                async with self._lock:
                    await self._open(reconnecting=True)
                continue
            try:
                async for frame in ws:
                    data = json.loads(frame)
                    kind = data.get("message_type")
                    now = time.perf_counter()
                    if kind in ("partial_transcript", "committed_transcript"):
                        self.link.progressed = True
                    if kind == "partial_transcript":
                        yield PartialTranscript(str(data.get("text", "")), now)
                    elif kind == "committed_transcript":
                        async with self._lock:
                            # Everything sent so far is now committed: keep nothing to resend.
                            self.pending.clear()
                        self.last_committed = str(data.get("text", "")) or self.last_committed
                        yield CommittedTranscript(str(data.get("text", "")), now)
                    elif kind in ("session_started", "committed_transcript_with_timestamps"):
                        continue
                    elif kind in RETRYABLE_ERRORS:
                        break
                    else:
                        raise server_error(str(kind), str(data.get("error", data)))
                if self.link.ws is None:
                    return  # closed by us
                raise websockets.ConnectionClosedError(None, None)
            except (websockets.ConnectionClosed, OSError) as exc:
                if self.link.ws is None and self.state is ConnectionState.CLOSED:
                    return
                self.link.lost(str(exc))
            except ServerError:
                raise

    async def close(self) -> None:
        await self.link.close()

"""``RealtimeTranscriber``: an asyncio client for the realtime speech-to-text WebSocket.

Send PCM from a file, a microphone or any async iterator; read events as an async iterator;
``commit()`` for manual commits. It records, for each committed segment, the time from the end
of speech to the committed text, and the cadence of partial transcripts.
"""

from __future__ import annotations

import asyncio
import json
import ssl as ssl_module
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import websockets
from websockets.asyncio.client import ClientConnection

from speechwire.audio.formats import STT_INPUT_FORMATS, AudioFormat
from speechwire.client.errors import ConnectionClosedError, server_error
from speechwire.client.tts import _ws_url
from speechwire.protocol.stt import input_audio_chunk

SPEECH_RMS = 300.0
"""A chunk louder than this counts as speech for the client's own end-of-speech clock."""


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session_id: str
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PartialTranscript:
    text: str
    received_at: float


@dataclass(frozen=True, slots=True)
class CommittedTranscript:
    text: str
    received_at: float
    words: tuple[dict[str, Any], ...] = ()
    timestamped: bool = False
    """The ``committed_transcript_with_timestamps`` copy of a commit (``events()`` skips it)."""


TranscriptEvent = SessionStarted | PartialTranscript | CommittedTranscript


@dataclass
class STTLatency:
    """End of speech → committed text (seconds, one per segment) and partial intervals."""

    end_of_speech_to_commit: list[float] = field(default_factory=list)
    partial_intervals: list[float] = field(default_factory=list)
    first_partial_after_speech: list[float] = field(default_factory=list)
    commit_to_committed: list[float] = field(default_factory=list)
    """Manual commits: from sending the commit to receiving the committed text."""


class RealtimeTranscriber:
    """One realtime STT socket. Use as ``async with RealtimeTranscriber(url) as stt:``."""

    def __init__(
        self,
        base_url: str,
        *,
        model_id: str = "scribe_v2_realtime",
        audio_format: str = "pcm_16000",
        commit_strategy: str = "vad",
        vad_silence_threshold_secs: float | None = None,
        include_timestamps: bool = False,
        language_code: str | None = None,
        api_key: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.format = AudioFormat.parse(audio_format, STT_INPUT_FORMATS)
        query: dict[str, str] = {
            "model_id": model_id,
            "audio_format": audio_format,
            "commit_strategy": commit_strategy,
        }
        if vad_silence_threshold_secs is not None:
            query["vad_silence_threshold_secs"] = str(vad_silence_threshold_secs)
        if include_timestamps:
            query["include_timestamps"] = "true"
        if language_code:
            query["language_code"] = language_code
        self.url = f"{_ws_url(base_url).rstrip('/')}/v1/speech-to-text/realtime?{urlencode(query)}"
        self._api_key = api_key
        self._ssl = ssl
        self._ws: ClientConnection | None = None
        self.session: SessionStarted | None = None
        self.latency = STTLatency()
        self._sent_samples = 0
        self._last_speech_sent_at: float | None = None  # wall time the last loud chunk went out
        self._speech_since_commit = False
        self._last_partial_at: float | None = None
        self._first_partial_pending = False
        self._commit_sent_at: float | None = None

    async def __aenter__(self) -> RealtimeTranscriber:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> SessionStarted:
        headers = {"xi-api-key": self._api_key} if self._api_key else None
        self._ws = await websockets.connect(
            self.url, additional_headers=headers, ssl=self._ssl, max_size=16 * 1024 * 1024, compression=None
        )
        event = self._parse(await self._ws.recv())
        if not isinstance(event, SessionStarted):
            raise ConnectionClosedError(f"expected session_started, got {event!r}")
        self.session = event
        return event

    def _socket(self) -> ClientConnection:
        if self._ws is None:
            raise ConnectionClosedError("not connected")
        return self._ws

    async def send_audio(
        self, pcm: bytes | npt.NDArray[np.int16], *, previous_text: str | None = None
    ) -> None:
        """Send one chunk in the session's ``audio_format`` (int16 arrays are taken as PCM)."""
        raw = pcm.astype("<i2").tobytes() if isinstance(pcm, np.ndarray) else pcm
        message = input_audio_chunk(raw, self.format.sample_rate, previous_text=previous_text)
        await self._socket().send(json.dumps(message))
        now = time.perf_counter()
        if self.format.codec == "pcm" and len(raw) >= 2:
            samples = np.frombuffer(raw[: len(raw) - len(raw) % 2], "<i2").astype(np.float64)
            if float(np.sqrt(np.mean(samples**2))) > SPEECH_RMS:
                if not self._speech_since_commit:
                    self._first_partial_pending = True
                # End of speech = the last loud 10 ms inside this chunk, in wall time: the chunk
                # went out when its last sample was spoken.
                frame = max(1, self.format.sample_rate // 100)
                usable = len(samples) - len(samples) % frame
                loud = np.nonzero(
                    np.sqrt(np.mean(samples[:usable].reshape(-1, frame) ** 2, axis=1)) > SPEECH_RMS
                )[0]
                end_sample = (int(loud[-1]) + 1) * frame if len(loud) else len(samples)
                self._last_speech_sent_at = now - (len(samples) - end_sample) / self.format.sample_rate
                self._speech_since_commit = True
        self._sent_samples += len(raw) // (self.format.bytes_per_sample or 2)

    async def commit(self) -> None:
        self._commit_sent_at = time.perf_counter()
        await self._socket().send(json.dumps(input_audio_chunk(b"", self.format.sample_rate, commit=True)))

    def _parse(self, frame: str | bytes) -> TranscriptEvent:
        data = json.loads(frame)
        kind = data.get("message_type")
        now = time.perf_counter()
        if kind == "session_started":
            return SessionStarted(str(data.get("session_id", "")), dict(data.get("config", {})))
        if kind == "partial_transcript":
            if self._last_partial_at is not None:
                self.latency.partial_intervals.append(now - self._last_partial_at)
            if self._first_partial_pending and self._last_speech_sent_at is not None:
                self._first_partial_pending = False
            self._last_partial_at = now
            return PartialTranscript(str(data.get("text", "")), now)
        if kind == "committed_transcript":
            if self._commit_sent_at is not None:
                self.latency.commit_to_committed.append(now - self._commit_sent_at)
                self._commit_sent_at = None
            if self._speech_since_commit and self._last_speech_sent_at is not None:
                self.latency.end_of_speech_to_commit.append(now - self._last_speech_sent_at)
            self._speech_since_commit = False
            self._last_partial_at = None
            return CommittedTranscript(str(data.get("text", "")), now)
        if kind == "committed_transcript_with_timestamps":
            # The copy of a commit already parsed; ``words`` is null without include_timestamps.
            return CommittedTranscript(
                str(data.get("text", "")), now, tuple(data.get("words") or ()), timestamped=True
            )
        raise server_error(str(kind), str(data.get("error", data)))

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        """Events until the socket closes; errors from the server raise typed exceptions."""
        ws = self._socket()
        try:
            async for frame in ws:
                event = self._parse(frame)
                if isinstance(event, CommittedTranscript) and event.timestamped:
                    continue  # the timestamped twin of a committed transcript already yielded
                yield event
        except websockets.ConnectionClosedError as exc:
            raise ConnectionClosedError(f"connection closed: {exc}") from exc

    async def finish(self, timeout: float = 5.0) -> CommittedTranscript | None:  # noqa: ASYNC109
        """Graceful end: commit what is uncommitted and wait (bounded) for its transcript.

        Read events from another task meanwhile, or call this instead of reading: it consumes
        events until the committed transcript arrives."""
        if not self._speech_since_commit and self._sent_samples == 0:
            return None
        await self.commit()
        try:
            async with asyncio.timeout(timeout):
                async for event in self.events():
                    if isinstance(event, CommittedTranscript):
                        return event
        except TimeoutError:
            return None
        return None

    async def stream_pcm(self, chunks: AsyncIterable[npt.NDArray[np.int16]]) -> None:
        async for chunk in chunks:
            await self.send_audio(chunk)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None


async def paced_chunks(
    pcm: npt.NDArray[np.int16],
    rate: int,
    chunk_ms: int = 100,
    realtime: bool = True,
    tail_silence_s: float = 0.0,
) -> AsyncIterator[npt.NDArray[np.int16]]:
    """Chunks of ``pcm`` at the pace of a live microphone (or as fast as possible).

    ``tail_silence_s`` appends silence so a VAD commit can fire after the last word.
    """
    if tail_silence_s > 0:
        pcm = np.concatenate([pcm, np.zeros(int(tail_silence_s * rate), np.int16)])
    step = max(1, rate * chunk_ms // 1000)
    start = time.perf_counter()
    for i, offset in enumerate(range(0, len(pcm), step)):
        if realtime:  # a microphone delivers a chunk when its last sample has been spoken
            delay = start + (i + 1) * chunk_ms / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        yield pcm[offset : offset + step]

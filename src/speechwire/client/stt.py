"""``RealtimeTranscriber``: an asyncio client for the realtime speech-to-text WebSocket.

Send PCM from a file, a microphone or any async iterator; read events as an async iterator;
``commit()`` for manual commits. It records, for each committed segment, the time from the end
of speech to the committed text, and the cadence of partial transcripts. Frames are built and
parsed by ``protocol.stt_client.STTClientSession``; with ``reconnect=`` a lost socket is replaced
and the audio since the last committed transcript is sent again, so no speech is lost and no
committed text repeats.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt

from speechwire.audio.formats import STT_INPUT_FORMATS, AudioFormat
from speechwire.client.errors import ConnectionClosedError, server_error
from speechwire.client.reconnect import (
    Connection,
    ConnectionState,
    GiveUpPolicy,
    Lost,
    ReconnectPolicy,
    StateChange,
    ws_url,
)
from speechwire.protocol.stt_client import (
    CommittedTranscript,
    PartialTranscript,
    SessionStarted,
    STTClientSession,
    TranscriptError,
    TranscriptEvent,
)

__all__ = [
    "CommittedTranscript",
    "PartialTranscript",
    "RealtimeTranscriber",
    "ResumableTranscriber",
    "SessionStarted",
    "TranscriptEvent",
    "paced_chunks",
]

SPEECH_RMS = 300.0
"""A chunk louder than this counts as speech for the client's own end-of-speech clock."""


@dataclass
class STTLatency:
    """End of speech → committed text (seconds, one per segment) and partial intervals."""

    end_of_speech_to_commit: list[float] = field(default_factory=list)
    partial_intervals: list[float] = field(default_factory=list)
    commit_to_committed: list[float] = field(default_factory=list)
    """Manual commits: from sending the commit to receiving the committed text."""


class RealtimeTranscriber:
    """One realtime STT stream. Use as ``async with RealtimeTranscriber(url) as stt:``."""

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
        token: str | None = None,
        reconnect: ReconnectPolicy | bool | None = None,
        on_state: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.format = AudioFormat.parse(audio_format, STT_INPUT_FORMATS)
        query: dict[str, str] = {
            "model_id": model_id,
            "audio_format": audio_format,
            "commit_strategy": commit_strategy,
        }
        if token:  # a single-use token, for browsers that cannot set headers
            query["token"] = token
        if vad_silence_threshold_secs is not None:
            query["vad_silence_threshold_secs"] = str(vad_silence_threshold_secs)
        if include_timestamps:
            query["include_timestamps"] = "true"
        if language_code:
            query["language_code"] = language_code
        self.url = f"{ws_url(base_url).rstrip('/')}/v1/speech-to-text/realtime?{urlencode(query)}"
        self.link = Connection(self.url, api_key=api_key, ssl=ssl, reconnect=reconnect, on_state=on_state)
        self.protocol = STTClientSession(self.format.sample_rate, keep=self.link.policy is not None)
        self.session: SessionStarted | None = None
        self.latency = STTLatency()
        self._sent_samples = 0
        self._last_speech_sent_at: float | None = None  # wall time the last loud chunk went out
        self._speech_since_commit = False
        self._last_partial_at: float | None = None
        self._commit_sent_at: float | None = None

    @property
    def state(self) -> ConnectionState:
        return self.link.state

    @property
    def pending(self) -> list[bytes]:
        """Audio sent since the last committed transcript (kept when reconnecting)."""
        return self.protocol.pending

    async def __aenter__(self) -> RealtimeTranscriber:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> SessionStarted:
        await self._open(reconnecting=False)
        assert self.session is not None
        return self.session

    async def _open(self, reconnecting: bool) -> None:
        async with self.link.lock:
            ws = await self.link.open(reconnecting)
            event = self.protocol.receive(await ws.recv(), time.perf_counter())
            if isinstance(event, TranscriptError):
                raise server_error(event.error, event.message)
            if not isinstance(event, SessionStarted):
                raise ConnectionClosedError(f"expected session_started, got {event!r}")
            self.session = event
            for frame in self.protocol.resume():  # the first time: nothing
                await self.link.send_now(frame)

    async def send_audio(
        self, pcm: bytes | npt.NDArray[np.int16], *, previous_text: str | None = None
    ) -> None:
        """Send one chunk in the session's ``audio_format`` (int16 arrays are taken as PCM)."""
        raw = pcm.astype("<i2").tobytes() if isinstance(pcm, np.ndarray) else pcm
        if self.link.ws is None and self.link.policy is None:
            raise ConnectionClosedError("not connected")
        await self.link.send(lambda: self.protocol.audio(raw, previous_text=previous_text))
        now = time.perf_counter()
        if self.format.codec == "pcm" and len(raw) >= 2:
            samples = np.frombuffer(raw[: len(raw) - len(raw) % 2], "<i2").astype(np.float64)
            if float(np.sqrt(np.mean(samples**2))) > SPEECH_RMS:
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
        """A manual commit (when reconnecting, only with audio to commit: a resent commit of
        nothing would be answered with an empty transcript)."""
        if self.protocol.keep and not self.protocol.pending:
            return
        self._commit_sent_at = time.perf_counter()
        await self.link.send(self.protocol.commit)

    def _measure(self, event: TranscriptEvent) -> None:
        now = event.received_at if not isinstance(event, SessionStarted) else time.perf_counter()
        if isinstance(event, PartialTranscript):
            if self._last_partial_at is not None:
                self.latency.partial_intervals.append(now - self._last_partial_at)
            self._last_partial_at = now
        elif isinstance(event, CommittedTranscript) and not event.timestamped:
            if self._commit_sent_at is not None:
                self.latency.commit_to_committed.append(now - self._commit_sent_at)
                self._commit_sent_at = None
            if self._speech_since_commit and self._last_speech_sent_at is not None:
                self.latency.end_of_speech_to_commit.append(now - self._last_speech_sent_at)
            self._speech_since_commit = False
            self._last_partial_at = None

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        """Events until the socket closes; errors from the server raise typed exceptions."""
        if self.link.ws is None and self.link.policy is None:
            raise ConnectionClosedError("not connected")
        while not self.link.closed:
            if self.link.ws is None:
                await self._open(reconnecting=True)
            error: TranscriptError | None = None
            lost = Lost(None, "")
            async for frame in self.link.frames():
                if isinstance(frame, Lost):
                    lost = frame
                    break
                event = self.protocol.receive(frame, time.perf_counter())
                if isinstance(event, TranscriptError):
                    error = event  # the close that follows decides: retry, or raise it
                    continue
                self._measure(event)
                if isinstance(event, PartialTranscript | CommittedTranscript):
                    self.link.progressed = True
                if not (isinstance(event, CommittedTranscript) and event.timestamped):
                    yield event  # the timestamped twin of a committed transcript is skipped
            if self.link.should_retry(lost, error.error if error else None):
                continue
            if error is not None:
                raise server_error(error.error, error.message)
            if self.link.closed or lost.code == 1000:
                return
            raise ConnectionClosedError(f"connection closed: {lost.code} {lost.reason}".strip())

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
        await self.link.close()


class ResumableTranscriber(RealtimeTranscriber):
    """``RealtimeTranscriber`` with reconnection on (the name README and users know)."""

    def __init__(
        self,
        base_url: str,
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
        super().__init__(base_url, reconnect=options.pop("reconnect", policy), **options)


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

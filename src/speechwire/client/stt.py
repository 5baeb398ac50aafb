"""``RealtimeTranscriber``: an asyncio client for the realtime speech-to-text WebSocket.

Send PCM from a file, a microphone or any async iterator; read events as an async iterator;
``commit()`` for manual commits; ``latency`` times each commit and the partials. Frames are built
and parsed by ``protocol.stt_client.STTClientSession``; with ``reconnect=`` a lost socket is
replaced and the audio since the last committed transcript is sent again, so no speech is lost
and no committed text repeats.

One task reads the socket: ``connect()`` starts it, and it owns every ``recv`` (websockets
allows one reader at a time). ``events()`` and ``finish()`` only wait on what it found, so audio
may be sent from one task while events are read in another, and ``finish()`` may be awaited by
either.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Unpack

import numpy as np
import numpy.typing as npt
import websockets
from websockets.asyncio.client import ClientConnection

from speechwire.audio.formats import STT_INPUT_FORMATS, AudioFormat
from speechwire.client.errors import ConnectionClosedError, SpeechwireError, server_error
from speechwire.client.reconnect import Client, ConnectionOptions, resumable
from speechwire.protocol.stt_client import (
    CommittedTranscript,
    PartialTranscript,
    SessionStarted,
    STTClientSession,
    STTServerEvent,
    Transcript,
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
    "TranscriptIncomplete",
    "finish_timeout",
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


class TranscriptIncomplete(SpeechwireError, TimeoutError):
    """``finish()`` timed out: the server had not committed ``missing_s`` seconds of audio."""

    def __init__(self, missing_s: float, timeout_s: float) -> None:
        super().__init__(
            f"the server did not commit the last {missing_s:.1f} s of audio within {timeout_s:.0f} s"
        )
        self.missing_s = missing_s
        self.timeout_s = timeout_s


_END = object()
"""Queued after the answer ``finish()`` waited for: ``events()`` ends there."""


def finish_timeout(audio_s: float) -> float:
    """How long ``finish()`` waits by default: 5 s plus half the audio's length, because a server
    that decodes slower than real time (a busy machine, a file sent as fast as possible) still
    has up to that much to decode when the last chunk is sent."""
    return 5.0 + 0.5 * audio_s


class RealtimeTranscriber(Client[STTClientSession, TranscriptEvent]):
    """One realtime STT stream. Use as ``async with RealtimeTranscriber(url) as stt:``.

    ``commit_strategy="vad"``: the server commits after ``vad_silence_threshold_secs`` of
    silence. Left as None the server's default applies — 1.5 s, as upstream, which suits a
    person who pauses to think but makes a script wait 1.5 s for each commit; ``speechwire
    transcribe`` passes 0.5 (a commit per sentence, about 0.6 s after it ends). ``"manual"``:
    only ``commit()`` commits (and the server on its own after 90 s of uncommitted audio).

    End with ``finish()``: it commits what is left and returns once the server has answered that
    commit, so nothing sent is lost."""

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
        token: str | None = None,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        self.format = AudioFormat.parse(audio_format, STT_INPUT_FORMATS)
        query: dict[str, object] = {
            "model_id": model_id,
            "audio_format": audio_format,
            "commit_strategy": commit_strategy,
            "token": token,  # a single-use token, for browsers that cannot set headers
            "vad_silence_threshold_secs": vad_silence_threshold_secs,
            "include_timestamps": include_timestamps,
            "language_code": language_code,
        }
        super().__init__(base_url, "/v1/speech-to-text/realtime", query, **connection)
        self.protocol = STTClientSession(self.format.sample_rate, keep=self.link.policy is not None)
        self.manual = commit_strategy == "manual"
        self._queue: asyncio.Queue[TranscriptEvent | BaseException | object] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._commits_sent = 0  # manual commits sent (the one a reconnect lost counted again)
        self._answers = 0  # committed transcripts received (not counting timestamped copies)
        self._marker_sent = False  # VAD mode: finish()'s second, empty commit is out
        self._done: asyncio.Future[CommittedTranscript | None] | None = None
        self._target = 0  # manual mode: the answer count that ends finish()
        self._last_committed: CommittedTranscript | None = None
        self._uncommitted_samples = 0
        self.session: SessionStarted | None = None
        self.latency = STTLatency()
        self._sent_samples = 0
        self._last_speech_sent_at: float | None = None  # wall time the last loud chunk went out
        self._speech_since_commit = False
        self._last_partial_at: float | None = None
        self._commit_sent_at: float | None = None

    @property
    def pending(self) -> list[bytes]:
        """Audio sent since the last committed transcript (kept when reconnecting)."""
        return self.protocol.pending

    async def connect(self) -> SessionStarted:
        await super().connect()
        assert self.session is not None
        self._reader = asyncio.create_task(self._read())
        return self.session

    async def _resume(self, ws: ClientConnection, reconnecting: bool) -> list[str]:
        """After the new socket's ``session_started``: the uncommitted audio, and the commits a
        reconnect lost."""
        try:
            first = await ws.recv()
        except websockets.ConnectionClosed as exc:
            raise ConnectionClosedError(f"closed before session_started: {exc}") from exc
        event = self.protocol.receive(first, time.perf_counter())
        if isinstance(event, TranscriptError):
            raise server_error(event.error, event.message)
        if not isinstance(event, SessionStarted):
            raise ConnectionClosedError(f"expected session_started, got {event!r}")
        self.session = event
        frames = self.protocol.resume()  # the first time: nothing
        if reconnecting and self._commits_sent > self._answers:
            # A manual commit lost with the socket: the audio it covered was just resent,
            # so one commit covers it all again (and is answered once).
            self._commits_sent = self._answers + 1
            frames.append(self.protocol.commit())
        if reconnecting and self._marker_sent:
            # finish() was waiting: commit the resent audio, then the marker again.
            frames += [self.protocol.commit()] * (2 if self.protocol.pending else 1)
        return frames

    async def send_audio(
        self, pcm: bytes | npt.NDArray[np.int16], *, previous_text: str | None = None
    ) -> None:
        """Send one chunk in the session's ``audio_format`` (int16 arrays are taken as PCM)."""
        raw = pcm.astype("<i2").tobytes() if isinstance(pcm, np.ndarray) else pcm
        await self._send(lambda: self.protocol.audio(raw, previous_text=previous_text))
        now = time.perf_counter()
        if self.format.codec == "pcm" and len(raw) >= 2:
            samples = np.frombuffer(raw[: len(raw) - len(raw) % 2], "<i2")
            # End of speech = the last loud 10 ms inside this chunk, in wall time: the chunk
            # went out when its last sample was spoken.
            end_sample = last_loud_sample(samples, self.format.sample_rate)
            if end_sample is not None:
                self._last_speech_sent_at = now - (len(samples) - end_sample) / self.format.sample_rate
                self._speech_since_commit = True
        samples_sent = len(raw) // (self.format.bytes_per_sample or 2)
        self._sent_samples += samples_sent
        self._uncommitted_samples += samples_sent

    async def commit(self) -> None:
        """A manual commit (when reconnecting, only with audio to commit: a resent commit of
        nothing would be answered with an empty transcript)."""
        if self.protocol.keep and not self.protocol.pending:
            return
        self._commit_sent_at = time.perf_counter()
        await self.link.send(self._counted_commit)

    def _counted_commit(self) -> str:
        self._commits_sent += 1
        return self.protocol.commit()

    def _receive(self, frame: str | bytes) -> STTServerEvent | None:
        """A frame's event, measured; None for the timestamped twin of a committed transcript."""
        event = self.protocol.receive(frame, time.perf_counter())
        if isinstance(event, PartialTranscript):
            if self._last_partial_at is not None:
                self.latency.partial_intervals.append(event.received_at - self._last_partial_at)
            self._last_partial_at = event.received_at
        elif isinstance(event, CommittedTranscript) and not event.timestamped:
            if self._commit_sent_at is not None:
                self.latency.commit_to_committed.append(event.received_at - self._commit_sent_at)
                self._commit_sent_at = None
            if self._speech_since_commit and self._last_speech_sent_at is not None:
                self.latency.end_of_speech_to_commit.append(event.received_at - self._last_speech_sent_at)
            self._speech_since_commit = False
            self._last_partial_at = None
        if isinstance(event, Transcript):
            self.link.progressed = True
        return None if isinstance(event, CommittedTranscript) and event.timestamped else event

    async def _read(self) -> None:
        """The one reader: events onto the queue. Whatever ends it (the server's close, an error, a
        give-up) is queued last, so ``events()`` raises it in the reading task, and ``finish()`` too."""
        try:
            async for event in self._events():
                self._queue.put_nowait(event)
                if isinstance(event, CommittedTranscript):
                    self._answered(event)
        except Exception as exc:  # handed to whoever reads or finishes
            self._fail(exc)
            return
        self._fail(ConnectionClosedError("connection closed"), quiet=True)

    def _fail(self, exc: BaseException, *, quiet: bool = False) -> None:
        self._failure = exc
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        self._queue.put_nowait(_END if quiet else exc)

    def _answered(self, event: CommittedTranscript) -> None:
        """A committed transcript arrived: is it the one ``finish()`` waits for?

        Manual mode: the server answers each commit once, in order, so counting is exact.
        VAD mode: the server's own commits are indistinguishable from answers, so ``finish()``
        sends a second commit after its own; with nothing left it is answered with an empty
        transcript, which marks the end (an empty VAD commit — speech the engine heard no words
        in — arriving in that moment would end it early; only silence is lost then)."""
        self._answers += 1
        self._uncommitted_samples = 0
        done = self._done
        if (done is not None and not done.done()) and (
            self._answers >= self._target if self.manual else self._marker_sent and not event.text
        ):
            done.set_result(event if self.manual else self._last_committed)
            self._queue.put_nowait(_END)
        elif event.text:
            self._last_committed = event

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        """Events until the socket closes or ``finish()`` is answered; server errors raise typed
        exceptions. Safe to run in its own task while another sends."""
        if self._reader is None and self.link.policy is None:
            raise ConnectionClosedError("not connected")
        while (item := await self._queue.get()) is not _END and not isinstance(item, BaseException):
            assert isinstance(item, SessionStarted | PartialTranscript | CommittedTranscript)
            yield item
        self._queue.put_nowait(_END)  # a second reader, or a later call, ends too
        if isinstance(item, BaseException):
            raise item

    @property
    def uncommitted_s(self) -> float:
        """Seconds of audio sent that no committed transcript has covered yet."""
        return self._uncommitted_samples / self.format.sample_rate

    async def finish(self, timeout: float | None = None) -> CommittedTranscript | None:  # noqa: ASYNC109
        """Graceful end: commit what is uncommitted and wait for the server's answer.

        Returns the last committed transcript with text (None if nothing was said), once the
        server has committed everything sent. ``timeout`` defaults to ``finish_timeout`` of the
        audio sent; past it ``TranscriptIncomplete`` says how much audio is uncommitted. Events
        keep flowing to ``events()`` (in another task, or read after this returns)."""
        if self._failure is not None:
            raise self._failure
        if timeout is None:
            timeout = finish_timeout(self._sent_samples / self.format.sample_rate)
        if (
            self.manual
            and self.protocol.keep
            and not self.protocol.pending
            and self._commits_sent <= self._answers
        ):
            return self._last_committed  # everything sent is committed and answered
        self._done = asyncio.get_running_loop().create_future()
        if self.manual:
            self._commit_sent_at = time.perf_counter()
            await self.link.send(self._counted_commit)
            self._target = self._commits_sent
        else:
            if self._uncommitted_samples:
                self._commit_sent_at = time.perf_counter()
                await self.link.send(self.protocol.commit)

            def marker() -> str:
                self._marker_sent = True
                return self.protocol.commit()

            await self.link.send(marker)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._done)
        except TimeoutError:
            raise TranscriptIncomplete(self.uncommitted_s, timeout) from None

    async def stream_pcm(self, chunks: AsyncIterable[npt.NDArray[np.int16]]) -> None:
        async for chunk in chunks:
            await self.send_audio(chunk)

    async def close(self) -> None:
        await self.link.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class ResumableTranscriber(RealtimeTranscriber):
    """``RealtimeTranscriber`` with reconnection on (the name README and users know); ``give_up``,
    ``connect_timeout``, ``ping_interval`` and ``ping_timeout`` tune it."""

    def __init__(self, base_url: str, **options: Any) -> None:
        super().__init__(base_url, **resumable(options))


def last_loud_sample(samples: npt.NDArray[np.int16], rate: int) -> int | None:
    """Where speech ends in ``samples``: the end of its last 10 ms louder than ``SPEECH_RMS``
    (the whole chunk when it is shorter than 10 ms and loud); None when the chunk is quiet."""
    x = samples.astype(np.float64)
    if not len(x) or float(np.sqrt(np.mean(x**2))) <= SPEECH_RMS:
        return None
    frame = max(1, rate // 100)
    usable = len(x) - len(x) % frame
    loud = np.nonzero(np.sqrt(np.mean(x[:usable].reshape(-1, frame) ** 2, axis=1)) > SPEECH_RMS)[0]
    return (int(loud[-1]) + 1) * frame if len(loud) else len(x)


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

"""``RealtimeTranscriber``: an asyncio client for the realtime speech-to-text WebSocket.

Send PCM from a file, a microphone or any async iterator; read events as an async iterator;
``commit()`` for manual commits. It records, for each committed segment, the time from the end
of speech to the committed text, and the cadence of partial transcripts. Frames are built and
parsed by ``protocol.stt_client.STTClientSession``; with ``reconnect=`` a lost socket is replaced
and the audio since the last committed transcript is sent again, so no speech is lost and no
committed text repeats.

One task reads the socket: ``connect()`` starts it, and it owns every ``recv`` (websockets
allows one reader at a time). ``events()`` and ``finish()`` only wait on what it found, so audio
may be sent from one task while events are read in another, and ``finish()`` may be awaited by
either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import websockets

from speechwire.audio.formats import STT_INPUT_FORMATS, AudioFormat
from speechwire.client.errors import ConnectionClosedError, SpeechwireError, server_error
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


class RealtimeTranscriber:
    """One realtime STT stream. Use as ``async with RealtimeTranscriber(url) as stt:``.

    ``commit_strategy="vad"``: the server commits after ``vad_silence_threshold_secs`` of
    silence. Left as None the server's default applies — 1.5 s, as upstream, which suits a
    person who pauses to think but makes a script wait 1.5 s for each commit; ``speechwire
    transcribe`` passes 0.5 (a commit per sentence, about 0.6 s after it ends). ``"manual"``:
    only ``commit()`` commits (and the server on its own after 90 s of uncommitted audio).

    Send from one task and read ``events()`` from another: one internal reader owns the
    socket. End with ``finish()``: it commits what is left and returns once the server has
    answered that commit, so nothing sent is lost.

    TLS: ``wss://`` and ``https://`` URLs verify the server against the system's trust store
    (``SSL_CERT_FILE`` is honoured), or ``cafile``; ``ssl`` takes a ready context instead.
    """

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
        cafile: str | None = None,
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
        self.link = Connection(
            self.url, api_key=api_key, ssl=ssl, cafile=cafile, reconnect=reconnect, on_state=on_state
        )
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
        self._reader = asyncio.create_task(self._read())
        return self.session

    async def _open(self, reconnecting: bool) -> None:
        async with self.link.lock:
            ws = await self.link.open(reconnecting)
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
            for frame in self.protocol.resume():  # the first time: nothing
                await self.link.send_now(frame)
            if reconnecting and self._commits_sent > self._answers:
                # A manual commit lost with the socket: the audio it covered was just resent,
                # so one commit covers it all again (and is answered once).
                self._commits_sent = self._answers + 1
                await self.link.send_now(self.protocol.commit())
            if reconnecting and self._marker_sent:
                # finish() was waiting: commit the resent audio, then the marker again.
                for _ in range(2 if self.protocol.pending else 1):
                    await self.link.send_now(self.protocol.commit())

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

    async def _read(self) -> None:
        """The one reader: frames → events on the queue, reconnecting under the policy.

        Whatever ends it (the server's close, an error, a give-up) is queued last, so
        ``events()`` raises it in the reading task, and ``finish()`` raises it too."""
        try:
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
                    if isinstance(event, CommittedTranscript) and event.timestamped:
                        continue  # the timestamped twin of a committed transcript is skipped
                    self._queue.put_nowait(event)
                    if isinstance(event, CommittedTranscript):
                        self._answered(event)
                if self.link.should_retry(lost, error.error if error else None):
                    continue
                if error is not None:
                    raise server_error(error.error, error.message)
                if self.link.closed or lost.code == 1000:
                    break
                raise ConnectionClosedError(f"connection closed: {lost.code} {lost.reason}".strip())
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
        if done is None or done.done():
            if event.text:
                self._last_committed = event
            return
        if (self.manual and self._answers >= self._target) or (
            not self.manual and self._marker_sent and not event.text
        ):
            last = event if self.manual else self._last_committed
            done.set_result(last)
            self._queue.put_nowait(_END)
        elif event.text:
            self._last_committed = event

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        """Events until the socket closes or ``finish()`` is answered; server errors raise typed
        exceptions. Safe to run in its own task while another sends."""
        if self._reader is None and self.link.policy is None:
            raise ConnectionClosedError("not connected")
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # a second reader, or a later call, ends too
                return
            if isinstance(item, BaseException):
                self._queue.put_nowait(_END)
                raise item
            assert isinstance(item, SessionStarted | PartialTranscript | CommittedTranscript)
            yield item

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
        self._done = asyncio.get_running_loop().create_future()
        if self.manual:
            if self.protocol.keep and not self.protocol.pending and self._commits_sent <= self._answers:
                self._done = None
                return self._last_committed
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

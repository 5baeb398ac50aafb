"""``/v1/speech-to-text/realtime``: the ElevenLabs Scribe realtime WebSocket on local engines.

Frames go through the sans-I/O ``STTServerSession`` (validation, base64, commit rules), audio is
resampled to 16 kHz and fed to the engine-agnostic ``StreamingRecognizer``, whose partial and
committed transcripts are sent back. Tolerance is upstream's (``protocol/stt.py`` says why): an
unknown query parameter is logged once per name per process; a commit with nothing pending is
answered with an empty ``committed_transcript`` (and its timestamped copy when asked), so an app
that awaits the commit's transcript does not hang. With ``include_timestamps`` or
``include_language_detection``, every commit is followed by ``committed_transcript_with_timestamps``
carrying ``language_code`` (words only with timestamps): the language given, or detected once
per session when none is (``engines/languages.py`` has the rule, ``engines/streaming.py`` when).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, WebSocket

from speechwire.audio.resample import StreamResampler
from speechwire.audio.stream_decoder import StreamingDecoder
from speechwire.engines.base import STTEngine
from speechwire.engines.languages import EngineChoice, NoEngine, STTRouter, report_code
from speechwire.engines.streaming import (
    Committed,
    Detection,
    LanguageDetected,
    Partial,
    RecognizerConfig,
    RecognizerEvent,
    StreamingRecognizer,
)
from speechwire.protocol.errors import ProtocolError
from speechwire.protocol.stt import (
    INPUT_ERROR,
    INVALID_REQUEST,
    TRANSCRIBER_ERROR,
    AudioIn,
    CommitRequested,
    EncodedAudioIn,
    RealtimeParams,
    STTEvent,
    STTServerSession,
    committed_transcript,
    committed_with_timestamps,
    error_message,
    partial_transcript,
    session_started,
    stt_error,
)
from speechwire.server.state import ServerState
from speechwire.server.ws.driver import Route
from speechwire.server.ws.session import serve_websocket
from speechwire.server.ws.session_socket import SessionSocket

router = APIRouter()
log = logging.getLogger("speechwire.stt")

CLOUD_STT_MODELS = (
    "scribe_v2_realtime",
    "scribe_v2_realtime_turbo",
    "scribe_v2_realtime_lite",
    "scribe_v1",
    "scribe_v2",
)
_logged_ignored: set[str] = set()


def log_ignored(names: tuple[str, ...]) -> None:
    """One info line per unknown query parameter name per process: enough to notice a client
    relying on something we do not do, without a line per session."""
    for name in names:
        if name not in _logged_ignored:
            _logged_ignored.add(name)
            log.info("realtime STT: query parameter %r is not supported here; ignored", name)


def resolve_stt(router: STTRouter, params: RealtimeParams) -> EngineChoice:
    """The engine and language a session starts with (the one rule, ``STTRouter``): a given
    language goes to the first engine that hears it, none means the default engine and
    detection; ``speechwire_<engine>`` picks one. Any refusal is ``invalid_request`` + 1008."""
    try:
        return router.choose(params.model_id, params.language_code)
    except NoEngine as exc:
        raise stt_error(INVALID_REQUEST, exc.message) from None


@router.websocket("/v1/speech-to-text/realtime")
async def realtime(ws: WebSocket) -> None:
    def open_session(state: ServerState, sock: SessionSocket) -> tuple[STTServerSession, _Realtime]:
        params = RealtimeParams.from_query(ws.query_params.multi_items())
        log_ignored(params.ignored)
        router = STTRouter(state.stt_engines, CLOUD_STT_MODELS)
        choice = resolve_stt(router, params)
        settings = state.settings
        session = STTServerSession(
            params,
            max_chunk_seconds=settings.stt_max_chunk_seconds,
            inactivity_timeout_s=settings.stt_inactivity_timeout_s,
            max_frame_bytes=settings.max_message_bytes,
            now=time.monotonic(),
        )
        return session, _Realtime(state, sock, session, router, choice)

    failed = stt_error(TRANSCRIBER_ERROR, "The transcriber failed; please reconnect.")
    await serve_websocket(ws, "realtime_scribe", error_message, open_session, failed)


class _Realtime(Route[STTEvent]):
    """What the events of one realtime socket mean: audio to the recogniser (through the webm
    decoder for ``webm_opus``), commits to it, and its transcripts back to the client."""

    def __init__(
        self,
        state: ServerState,
        sock: SessionSocket,
        session: STTServerSession,
        router: STTRouter,
        choice: EngineChoice,
    ) -> None:
        assert state.stt_pool is not None
        params = session.params
        self.state, self.sock, self.session, self.params = state, sock, session, params
        self.choice = choice
        self.resampler = StreamResampler(params.audio_format.sample_rate, 16000)
        config = RecognizerConfig(
            commit_on_vad=params.commit_strategy == "vad",
            vad_threshold=params.vad_threshold,
            silence_commit_s=params.vad_silence_threshold_secs,
            min_speech_s=params.min_speech_duration_ms / 1000,
            min_silence_s=params.min_silence_duration_ms / 1000,
            word_timestamps=params.include_timestamps,
            language=choice.language,
            detect_after_s=state.settings.stt_detect_after_s,
        )
        detection = None
        if choice.detector is not None:
            deadline = max(1.0, config.silence_commit_s) + 0.5  # behind commits and phrase decodes

            def engine_for(code: str) -> tuple[str, STTEngine]:
                settled = router.settle(choice, code)
                return settled.name, settled.engine

            detection = Detection(choice.detector, engine_for, deadline)
        pending = " until one is detected" if detection is not None else ""
        log.debug("realtime STT: engine %s, language %s%s", choice.name, choice.language, pending)
        self.recognizer = StreamingRecognizer(choice.engine, state.stt_pool, config, self._emit, detection)
        self.arrivals = _Arrivals(self.recognizer, state)
        self.encoded = _EncodedInput(self.arrivals, sock) if params.audio_format.codec == "webm" else None

    async def on_open(self) -> None:
        await self.sock.send(session_started(uuid.uuid4().hex, self.params))

    async def on_event(self, event: STTEvent) -> None:
        if isinstance(event, AudioIn):
            await self.arrivals.feed(self.resampler.process(event.pcm))
        elif isinstance(event, EncodedAudioIn) and self.encoded is not None:
            await self.encoded.feed(event.data)
        elif isinstance(event, CommitRequested):
            if event.nothing_pending:  # harmless: see the module docstring
                await self._send_committed("", [], self.recognizer.language)
            elif self.encoded is not None:
                await self.encoded.commit()
            else:
                await self.recognizer.commit()

    async def _emit(self, event: RecognizerEvent) -> None:
        if isinstance(event, Partial):
            await self.sock.send(partial_transcript(event.text))
        elif isinstance(event, LanguageDetected):
            log.debug(
                "realtime STT: language %s detected (p=%.2f), engine %s",
                event.language,
                event.probability,
                event.engine,
            )
        elif isinstance(event, Committed):
            self.session.committed()
            await self._send_committed(event.text, list(event.words), event.language)
            arrived = self.arrivals.arrival_of(event.speech_end_s) if event.text else None
            if arrived is not None:
                self.state.metrics.stt_final.observe(time.monotonic() - arrived)

    async def _send_committed(
        self, text: str, words: list[tuple[str, float, float, float | None]], language: str | None
    ) -> None:
        await self.sock.send(committed_transcript(text))
        if self.params.language_message:
            words_or_none = words if self.params.include_timestamps else None
            await self.sock.send(committed_with_timestamps(text, words_or_none, report_code(language)))

    async def on_close(self) -> None:
        if self.encoded is not None:
            await self.encoded.close()
        await self.recognizer.close()


_COMMIT = object()
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
"""Every WebM (Matroska, EBML) stream starts with these four bytes."""


class _Arrivals:
    """When each stretch of audio arrived, so a commit's end of speech (stream time) maps to the
    moment its audio reached the server: end of speech → final, as the server sees it."""

    def __init__(self, recognizer: StreamingRecognizer, state: ServerState) -> None:
        self.recognizer = recognizer
        self.metrics = state.metrics
        self.marks: collections.deque[tuple[int, float]] = collections.deque(maxlen=4096)
        self.total = 0

    async def feed(self, pcm16k: npt.NDArray[np.int16]) -> None:
        self.total += len(pcm16k)
        self.marks.append((self.total, time.monotonic()))
        self.metrics.audio_in.inc(len(pcm16k) / 16000)
        await self.recognizer.feed(pcm16k)

    def arrival_of(self, stream_s: float) -> float | None:
        sample = stream_s * 16000
        for end, at in self.marks:
            if end >= sample:
                return at
        return self.marks[-1][1] if self.marks else None


class _EncodedInput:
    """A ``webm_opus`` session's input: bytes go to a decoder thread, whose 16 kHz PCM and the
    client's commits reach the recogniser through one queue, so a commit never overtakes audio
    sent before it."""

    def __init__(self, arrivals: _Arrivals, sender: SessionSocket) -> None:
        loop = asyncio.get_running_loop()
        self.arrivals = arrivals
        self.sender = sender
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.failed: ProtocolError | None = None
        self.head = b""
        """The stream's first bytes, until there are enough to check the WebM signature."""
        self.error_sent: asyncio.Task[None] | None = None
        self.decoder = StreamingDecoder(
            "webm",
            16000,
            lambda pcm: loop.call_soon_threadsafe(self.queue.put_nowait, pcm),
            lambda exc: loop.call_soon_threadsafe(self._fail, exc),
        )
        self.task = asyncio.create_task(self._consume())

    def _fail(self, exc: Exception) -> None:
        """The stream is broken: tell the client now (it may send nothing more to hear it on)."""
        self.failed = stt_error(INPUT_ERROR, f"The webm_opus stream could not be decoded: {exc}")
        self.error_sent = asyncio.create_task(self.sender.fail(self.failed))

    async def feed(self, data: bytes) -> None:
        if self.failed is not None:
            raise self.failed
        if len(self.head) < len(EBML_MAGIC):
            self.head += data[: len(EBML_MAGIC) - len(self.head)]
            if not EBML_MAGIC.startswith(self.head):
                # FFmpeg's probe would wait for more bytes for ever (issue 14: no error in 6 s).
                raise stt_error(
                    INPUT_ERROR,
                    "The webm_opus stream could not be decoded: it does not start with a WebM "
                    "(EBML) header. Send MediaRecorder's output from its first chunk.",
                )
        if self.task.done():
            self.task.result()  # re-raise a recogniser failure here, in the session's task
        self.decoder.feed(data)

    async def commit(self) -> None:
        await asyncio.to_thread(self.decoder.wait_decoded)
        self.queue.put_nowait(_COMMIT)

    async def _consume(self) -> None:
        while True:
            item = await self.queue.get()
            if item is _COMMIT:
                await self.arrivals.recognizer.commit()
            else:
                await self.arrivals.feed(item)

    async def close(self) -> None:
        await asyncio.to_thread(self.decoder.close, 1.0)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task

"""pipecat's ElevenLabs TTS services, unchanged but for their URL, against the real server.

A real pipecat ``Pipeline`` (``PipelineTask`` + ``PipelineRunner``) holds the service and a sink
that collects ``TTSAudioRawFrame``s; frames are queued as an LLM produces them (response start,
a token every 20 ms, response end). What pipecat does at the end of every turn — ``flush`` and
``close_context`` in the same millisecond — must still voice the turn; an ``InterruptionFrame``
must stop the interrupted turn's audio reaching pipecat's output (pipecat drops a closed
context's late audio itself; the server still sends it, as upstream does). Intelligibility is
judged by an independent recogniser (Whisper tiny.en) on what came out of the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

pytest.importorskip("pipecat")

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.elevenlabs.tts import ElevenLabsHttpTTSService, ElevenLabsTTSService

from speechwire.bench.wer import corpus_wer
from speechwire.server.ops.runner import RunningServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RATE = 16000
MAX_WER = 0.10  # the bound; measured 0 % per turn here (Whisper tiny.en as the judge)
TURNS = [
    "Hello there! I can help with that. What would you like to know?",
    "The weather today will be sunny with a high of seventy degrees.",
    "Your meeting with the design team has been moved to three o'clock.",
]
LONG_TURN = (
    "Every night for forty years the old keeper climbed the narrow stairs of the lighthouse. "
    "He lit the great lamp and watched the ships pass safely through the dark waters of the bay. "
    "He kept a logbook of every vessel that went by, with its name, its flag and the hour it passed. "
    "When the storms came in from the west he stayed awake until morning, listening to the wind. "
    "More than once he rowed out himself to bring sailors home from the rocks below the cliff. "
)
AFTER_INTERRUPT = "Sorry, go ahead. I am listening."


class Sink(FrameProcessor):
    """The end of the pipeline: records audio frames (arrival time, context) and turn ends."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[tuple[float, str | None, bytes]] = []
        self.stopped = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio.append((time.monotonic(), frame.context_id, frame.audio))
        elif isinstance(frame, TTSStoppedFrame):
            self.stopped.set()
        await self.push_frame(frame, direction)

    def pcm(self, context_id: str | None) -> np.ndarray:
        return np.frombuffer(b"".join(a for _, c, a in self.audio if c == context_id), np.int16)


@contextlib.asynccontextmanager
async def run_pipeline(service: FrameProcessor, sink: Sink) -> AsyncIterator[PipelineTask]:
    task = PipelineTask(
        Pipeline([service, sink]),
        params=PipelineParams(audio_out_sample_rate=RATE),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    runner = PipelineRunner(handle_sigint=False)
    running = asyncio.create_task(runner.run(task))
    try:
        yield task
    finally:
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(running, 20)


async def llm_turn(task: PipelineTask, text: str, token_s: float = 0.02) -> None:
    """What an LLM service pushes for one reply: start, a token at a time, end."""
    await task.queue_frame(LLMFullResponseStartFrame())
    for word in text.split(" "):
        await task.queue_frame(LLMTextFrame(word + " "))
        await asyncio.sleep(token_s)
    await task.queue_frame(LLMFullResponseEndFrame())


def heard(pcm: np.ndarray, whisper: object) -> str:
    return str(whisper.transcribe(pcm).text)  # type: ignore[attr-defined]


def contexts_in_order(sink: Sink) -> list[str | None]:
    seen: list[str | None] = []
    for _, cid, _ in sink.audio:
        if cid not in seen:
            seen.append(cid)
    return seen


async def wait_turn(sink: Sink, wait_s: float = 20) -> None:
    await asyncio.wait_for(sink.stopped.wait(), wait_s)
    sink.stopped.clear()


async def test_pipecat_websocket_turns_and_interruption(server: RunningServer, whisper: object) -> None:
    service = ElevenLabsTTSService(
        api_key="unused-in-dev", settings=ElevenLabsTTSService.Settings(voice="joe"), url=server.ws_url
    )
    sink = Sink()
    async with run_pipeline(service, sink) as task:
        for text in TURNS:  # LLM-paced turns, each ended by pipecat's flush + close_context pair
            await llm_turn(task, text)
            await wait_turn(sink)
        voiced = contexts_in_order(sink)
        assert len(voiced) == len(TURNS) and None not in voiced  # every turn voiced, own context
        pairs = [(text, heard(sink.pcm(cid), whisper)) for text, cid in zip(TURNS, voiced, strict=True)]
        print("pipecat websocket turns:", pairs)
        for text, hypothesis in pairs:
            assert corpus_wer([(text, hypothesis)]).rate <= MAX_WER, (text, hypothesis)

        # A long reply, interrupted as soon as its audio starts (the user talks over it).
        await llm_turn(task, LONG_TURN, token_s=0.005)
        while len(contexts_in_order(sink)) == len(TURNS):  # noqa: ASYNC110 (polls the sink)
            await asyncio.sleep(0.005)
        interrupted = contexts_in_order(sink)[-1]
        await task.queue_frame(InterruptionFrame())
        interrupted_at = time.monotonic()
        await asyncio.sleep(0.1)  # the interruption reaches the service
        await llm_turn(task, AFTER_INTERRUPT)
        await wait_turn(sink)
        await asyncio.sleep(1.0)  # time for any late audio of the old context to arrive
        late = [t for t, cid, _ in sink.audio if cid == interrupted and t > interrupted_at + 0.05]
        assert late == []  # nothing of the interrupted turn reached the output after the interrupt
        # (Without an output transport pipecat passes audio on as fast as it arrives, so what of
        # the long turn got through before the interrupt is not a playback length.)
        after = contexts_in_order(sink)[-1]
        assert after != interrupted
        assert corpus_wer([(AFTER_INTERRUPT, heard(sink.pcm(after), whisper))]).rate <= MAX_WER


async def test_pipecat_http_service_turns(server: RunningServer, whisper: object) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        service = ElevenLabsHttpTTSService(
            api_key="unused-in-dev",
            settings=ElevenLabsHttpTTSService.Settings(voice="joe"),
            aiohttp_session=session,
            base_url=server.http_url,
        )
        sink = Sink()
        async with run_pipeline(service, sink) as task:
            for text in TURNS[:2]:
                await llm_turn(task, text)
                await wait_turn(sink)
            voiced = contexts_in_order(sink)
            assert len(voiced) >= 1
            pcm = np.frombuffer(b"".join(a for _, _, a in sink.audio), np.int16)
            result = corpus_wer([(" ".join(TURNS[:2]), heard(pcm, whisper))])
            print("pipecat http:", result)
            assert result.rate <= MAX_WER, result

"""pipecat's ``ElevenLabsRealtimeSTTService`` (pipecat-ai 1.14.0, unchanged) against our server.

The service always connects to ``wss://{base_url}/v1/speech-to-text/realtime`` with the key in
``xi-api-key``, so the server runs TLS with a throwaway CA that ``SSL_CERT_FILE`` makes trusted.
It is driven by a real pipecat pipeline, as a voice app builds it: audio frames queued at
real-time pace → pipecat's own ``VADProcessor`` with Silero (which emits the
``VADUserStartedSpeakingFrame``/``VADUserStoppedSpeakingFrame`` that make the service commit in
manual mode) → the STT service → a sink that keeps ``TranscriptionFrame``s and
``InterimTranscriptionFrame``s. Several dev-set recordings are played back to back with pauses;
the final transcripts are scored against their references.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trustme

from speechwire.audio.wav import read_wav
from speechwire.bench.wer import wer
from speechwire.config import Settings
from speechwire.server.ops.runner import RunningServer, start_server

from .conftest import speech_manifest, tls_files

MANIFEST = {u.path.name: u for u in speech_manifest()}
FILES = ["ls_1272-128104-0001.wav", "librivox_0890.wav", "ls_1089-134686-0002.wav", "lj_LJ001-0004.wav"]
GAP_S = 1.5
FRAME_MS = 20  # what pipecat's transports deliver


@pytest.fixture(scope="module")
def tls_stt(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    certfile, keyfile = tls_files(ca, tmp_path_factory.mktemp("tls"))
    running = start_server(
        Settings(dev=True, tts_engines=["espeak"], stt_engines=["moonshine"]),
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    yield running
    running.stop()


async def run_pipeline(base_url: str, strategy: str) -> tuple[list[Any], list[Any], list[Any]]:
    """(finals, interims, errors) from pipecat, after the files have played at real-time pace."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import (
        EndFrame,
        ErrorFrame,
        Frame,
        InputAudioRawFrame,
        InterimTranscriptionFrame,
        TranscriptionFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.elevenlabs.stt import CommitStrategy, ElevenLabsRealtimeSTTService
    from pipecat.workers.runner import WorkerRunner

    finals: list[Any] = []
    interims: list[Any] = []
    errors: list[Any] = []

    class Sink(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TranscriptionFrame):
                finals.append(frame)
            elif isinstance(frame, InterimTranscriptionFrame):
                interims.append(frame)
            elif isinstance(frame, ErrorFrame):
                errors.append(frame)
            await self.push_frame(frame, direction)

    stt = ElevenLabsRealtimeSTTService(
        api_key="unused-locally",
        base_url=base_url,
        commit_strategy=CommitStrategy(strategy),
        settings=ElevenLabsRealtimeSTTService.Settings(
            vad_silence_threshold_secs=0.5 if strategy == "vad" else None
        ),
    )

    @stt.event_handler("on_connection_error")  # type: ignore[untyped-decorator]
    async def on_error(_service: Any, error: Any) -> None:
        errors.append(error)

    pipeline = Pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt, Sink()])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=16000),
        idle_timeout_secs=None,
        enable_rtvi=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")  # type: ignore[untyped-decorator]
    async def on_started(_worker: Any, _frame: Any) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 30)
    step = 16000 * FRAME_MS // 1000
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent = 0
    for name in FILES:
        pcm, rate = read_wav(MANIFEST[name].path)
        assert rate == 16000
        audio = np.concatenate([pcm, np.zeros(int(GAP_S * 16000), np.int16)])
        for i in range(0, len(audio), step):
            await worker.queue_frame(
                InputAudioRawFrame(audio=audio[i : i + step].tobytes(), sample_rate=16000, num_channels=1)
            )
            sent += step
            await asyncio.sleep(max(0.0, t0 + sent / 16000 - loop.time()))
    await asyncio.sleep(1.5)  # the last commit's answer
    await worker.queue_frame(EndFrame())
    await asyncio.wait_for(running, 30)
    return finals, interims, errors


@pytest.mark.parametrize("strategy", ["manual", "vad"])
async def test_pipecat_realtime_stt(
    tls_stt: RunningServer, trusted: Path, strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    finals, interims, errors = await run_pipeline(f"127.0.0.1:{tls_stt.port}", strategy)
    assert not errors, errors
    assert interims, "pipecat saw no interim transcripts"
    assert finals, "pipecat saw no final transcripts"
    assert all(f.finalized == (strategy == "manual") for f in finals)  # pipecat's own rule
    reference = " ".join(MANIFEST[name].transcript for name in FILES)
    hypothesis = " ".join(f.text for f in finals)
    rate = wer(reference, hypothesis).rate
    with capsys.disabled():
        print(f"\npipecat {strategy}: {len(finals)} finals, {len(interims)} interims, WER {rate:.3f}")
    assert rate <= 0.12, (rate, hypothesis)

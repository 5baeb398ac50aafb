"""``RealtimeTranscriber``: send in one task, read in another, finish from either (issue 15, item 5).

The old ``finish()`` read the socket itself, so a task iterating ``events()`` beside it raised
websockets' ``ConcurrencyError`` ("cannot call recv while another coroutine is already running
recv"). One internal reader owns the socket now; ``finish()`` waits for the answer to its commit,
in VAD mode and in manual mode, and ``events()`` ends after that answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from speechwire.audio.wav import read_wav
from speechwire.bench.wer import wer
from speechwire.client.stt import CommittedTranscript, RealtimeTranscriber, TranscriptIncomplete, paced_chunks
from speechwire.server.ops.runner import RunningServer, start_server

from .cli_support import light_settings
from .conftest import SPEECH_DIR, speech_manifest


@pytest.fixture(scope="module")
def stt_server() -> Iterator[RunningServer]:
    running = start_server(light_settings())
    yield running
    running.stop()


@pytest.mark.parametrize("strategy", ["vad", "manual"])
async def test_send_in_one_task_read_in_another(stt_server: RunningServer, strategy: str) -> None:
    utterance = next(u for u in speech_manifest() if u.path.name == "librivox_concat_long.wav")
    pcm, _ = read_wav(utterance.path)
    committed: list[str] = []
    async with RealtimeTranscriber(
        stt_server.ws_url, commit_strategy=strategy, vad_silence_threshold_secs=0.5
    ) as stt:

        async def read() -> None:
            async for event in stt.events():
                if isinstance(event, CommittedTranscript):
                    committed.append(event.text)

        async def send() -> CommittedTranscript | None:
            await stt.stream_pcm(paced_chunks(pcm, 16000, 100, realtime=False))
            return await stt.finish()

        reader = asyncio.create_task(read())
        last = await asyncio.create_task(send())
        await asyncio.wait_for(reader, 5)  # events() ends after finish()'s answer
    text = " ".join(committed)
    assert last is not None and last.text and last.text in text
    assert wer(utterance.transcript, text).rate <= 0.10, text


async def test_finish_from_the_reading_task(stt_server: RunningServer) -> None:
    """``finish()`` in the same task as ``events()`` (after sending): its answer is then read."""
    pcm, _ = read_wav(SPEECH_DIR / "jfk.wav")
    async with RealtimeTranscriber(stt_server.ws_url, commit_strategy="manual") as stt:
        sender = asyncio.create_task(stt.stream_pcm(paced_chunks(pcm, 16000, 100, realtime=False)))
        await sender
        last = await stt.finish()
        texts = [e.text async for e in stt.events() if isinstance(e, CommittedTranscript)]
    assert last is not None and texts[-1] == last.text and "country" in last.text.lower()


async def test_finish_times_out_with_what_is_missing(stt_server: RunningServer) -> None:
    pcm, _ = read_wav(SPEECH_DIR / "jfk.wav")
    async with RealtimeTranscriber(stt_server.ws_url, commit_strategy="manual") as stt:
        await stt.stream_pcm(paced_chunks(pcm, 16000, 100, realtime=False))
        with pytest.raises(TranscriptIncomplete) as raised:
            await stt.finish(timeout=0.001)
    assert raised.value.missing_s == pytest.approx(11.0, abs=0.2)

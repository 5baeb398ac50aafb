"""``/metrics`` counts what happened, and log lines carry their session id (and no secrets)."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import httpx
import numpy as np
import pytest
import websockets

from speechwire.audio.wav import read_wav
from speechwire.client.stt import paced_chunks
from speechwire.server.ops.logs import JsonFormatter
from speechwire.server.ops.runner import RunningServer
from tests.conftest import speech_manifest


def scrape(server: RunningServer) -> dict[str, float]:
    text = httpx.get(f"{server.http_url}/metrics").text
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(speechwire_[^\s]+)\s+([0-9.e+-]+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


async def test_metrics_count_sessions_latencies_audio_and_errors(server: RunningServer) -> None:
    before = scrape(server)
    url = f"{server.ws_url}/v1/text-to-speech/joe/stream-input?output_format=pcm_16000"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"text": " "}))
        await ws.send(json.dumps({"text": "Counting what happens. ", "flush": True}))
        await ws.send(json.dumps({"text": ""}))
        async for _ in ws:
            pass
    utterance = next(u for u in speech_manifest() if u.path.name == "librivox_0880.wav")
    pcm, _ = read_wav(utterance.path)
    stt = f"{server.ws_url}/v1/speech-to-text/realtime?commit_strategy=vad&vad_silence_threshold_secs=0.3"
    async with websockets.connect(stt) as ws:
        await ws.recv()
        async for piece in paced_chunks(np.concatenate([pcm, np.zeros(16000, np.int16)]), 16000, 100, False):
            chunk = {"message_type": "input_audio_chunk", "audio_base_64": _b64(piece)}
            await ws.send(json.dumps(chunk))
        while json.loads(await asyncio.wait_for(ws.recv(), 20))["message_type"] != "committed_transcript":
            pass
    async with websockets.connect(
        f"{server.ws_url}/v1/speech-to-text/realtime?commit_strategy=sometimes"
    ) as ws:
        await ws.recv()
        await ws.wait_closed()
    await asyncio.sleep(0.2)
    after = scrape(server)
    assert delta(after, before, 'speechwire_sessions_total{backend="local",kind="tts"}') >= 1
    assert delta(after, before, 'speechwire_sessions_total{backend="local",kind="stt"}') >= 2
    assert delta(after, before, "speechwire_tts_time_to_first_audio_seconds_count") >= 1
    assert delta(after, before, "speechwire_stt_end_of_speech_to_final_seconds_count") >= 1
    assert delta(after, before, "speechwire_audio_out_seconds_total") > 1.0
    assert delta(after, before, "speechwire_audio_in_seconds_total") >= len(pcm) / 16000
    assert delta(after, before, 'speechwire_errors_total{error="invalid_request",kind="stt"}') == 1
    assert delta(after, before, 'speechwire_engine_queue_wait_seconds_count{pool="tts"}') >= 1
    assert after.get('speechwire_sessions_open{kind="tts"}', 0) == 0


def _b64(piece: np.ndarray) -> str:
    import base64

    return base64.b64encode(piece.astype("<i2").tobytes()).decode()


async def test_log_lines_carry_the_session_id(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="speechwire")
    url = f"{server.ws_url}/v1/text-to-speech/no-such-voice/stream-input"
    async with websockets.connect(url) as ws:
        await ws.recv()
        await ws.wait_closed()
    records = [
        r for r in caplog.records if r.name.startswith("speechwire.") and "no-such-voice" not in r.name
    ]
    session_lines = [r for r in records if "rejected" in r.getMessage() or "refused" in r.getMessage()]
    assert session_lines, [r.getMessage() for r in records]
    ids = {getattr(r, "session_id", "-") for r in session_lines}
    assert "-" not in ids and all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)
    line = json.loads(JsonFormatter().format(session_lines[0]))
    assert line["session"] in ids and line["level"] == "INFO"

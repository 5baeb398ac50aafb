"""Realtime STT tolerates what upstream tolerates and real clients depend on (issue 12, items 6-8).

On the real server with real engines: a commit with nothing pending is answered with an empty
``committed_transcript`` and the session goes on; unknown query parameters are ignored and logged
once per name; ``include_language_detection`` alone yields the ``language_code`` copy of each
commit; ``vad_commit_strategy`` is the strategy string; words carry ``logprob``; the official
Python SDK's final ``commit()`` after a VAD commit is harmless; a token minted with an API key is
accepted from any Origin while key-less and page-minted tokens keep the Origin check.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import websockets
from pydantic import SecretStr

from speechwire.audio.wav import read_wav
from speechwire.bench.wer import corpus_wer, wer
from speechwire.client.stt import paced_chunks
from speechwire.config import Settings
from speechwire.server.ops.runner import RunningServer, start_server
from speechwire.server.routes import stt_ws

from .conftest import speech_manifest

MANIFEST = {u.path.name: u for u in speech_manifest()}
KEY = "sw_test_key_for_tolerance_000000000000"


@pytest.fixture(scope="module")
def stt_server() -> Iterator[RunningServer]:
    running = start_server(Settings(dev=True, tts_engines=["espeak"], stt_engines=["moonshine", "whisper"]))
    yield running
    running.stop()


def chunk(pcm: bytes, *, commit: bool = False) -> str:
    """What both SDKs send (their ``commit()`` is this with no audio)."""
    return json.dumps(
        {
            "message_type": "input_audio_chunk",
            "audio_base_64": base64.b64encode(pcm).decode(),
            "commit": commit,
            "sample_rate": 16000,
        }
    )


def pcm_of(name: str, tail_s: float = 0.0) -> npt.NDArray[np.int16]:
    pcm, rate = read_wav(MANIFEST[name].path)
    assert rate == 16000
    return np.concatenate([pcm, np.zeros(int(tail_s * 16000), np.int16)])


async def until(ws: Any, kind: str, seen: list[dict[str, Any]], timeout: float = 20) -> dict[str, Any]:  # noqa: ASYNC109
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        seen.append(message)
        assert "error" not in message, message
        if message["message_type"] == kind:
            return message


async def send_all(ws: Any, pcm: npt.NDArray[np.int16], realtime: bool = False) -> None:
    async for piece in paced_chunks(pcm, 16000, 100, realtime):
        await ws.send(chunk(piece.tobytes()))


async def test_commit_with_nothing_pending_is_answered_and_the_session_goes_on(
    stt_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{stt_server.ws_url}/v1/speech-to-text/realtime?model_id=scribe_v2_realtime"
    seen: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws:
        await until(ws, "session_started", seen)
        await ws.send(chunk(b"", commit=True))  # push-to-talk pressed before any audio
        assert (await until(ws, "committed_transcript", seen))["text"] == ""
        utterance = MANIFEST["ls_1089-134691-0001.wav"]
        await send_all(ws, pcm_of(utterance.path.name))
        await ws.send(chunk(b"", commit=True))
        text = (await until(ws, "committed_transcript", seen))["text"]
        await ws.send(chunk(b"", commit=True))  # the double tap
        assert (await until(ws, "committed_transcript", seen))["text"] == ""
        await send_all(ws, pcm_of("lj_LJ001-0002.wav"))  # and it still transcribes
        await ws.send(chunk(b"", commit=True))
        again = (await until(ws, "committed_transcript", seen))["text"]
    with capsys.disabled():
        print(f"\nmanual commits: {text!r} {again!r}")
    assert wer(utterance.transcript, text).rate <= 0.15
    assert wer(MANIFEST["lj_LJ001-0002.wav"].transcript, again).rate <= 0.15
    assert not [m for m in seen if "error" in m]


async def test_unknown_query_parameters_are_ignored_and_logged_once(stt_server: RunningServer) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    stt_ws._logged_ignored.clear()  # once per process: start from none logged, whatever ran before
    handler = Keep(logging.INFO)
    logger = logging.getLogger("speechwire.stt")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        query = "model_id=scribe_v2_realtime&timestamps_granularity=word&sample_rate=16000&max_tokens=9"
        for _ in range(3):
            async with websockets.connect(f"{stt_server.ws_url}/v1/speech-to-text/realtime?{query}") as ws:
                assert json.loads(await ws.recv())["message_type"] == "session_started"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [r.getMessage() for r in records if "ignored" in r.getMessage()]
    for name in ("timestamps_granularity", "sample_rate", "max_tokens"):
        assert sum(name in line for line in lines) == 1, lines  # once per process, not per session
    assert all(r.levelno == logging.INFO for r in records if "ignored" in r.getMessage())


async def test_language_detection_alone_sends_the_language_copy_in_vad_mode(
    stt_server: RunningServer,
) -> None:
    url = (
        f"{stt_server.ws_url}/v1/speech-to-text/realtime?model_id=scribe_v2_realtime"
        "&commit_strategy=vad&vad_silence_threshold_secs=0.5&include_language_detection=true"
    )
    seen: list[dict[str, Any]] = []
    utterance = MANIFEST["lj_LJ001-0001.wav"]
    async with websockets.connect(url) as ws:
        started = await until(ws, "session_started", seen)
        assert started["config"]["vad_commit_strategy"] == "vad"
        assert started["config"]["include_language_detection"] is True
        reader = asyncio.create_task(until(ws, "never", seen, timeout=60))
        await send_all(ws, pcm_of(utterance.path.name, tail_s=1.5), realtime=True)
        await asyncio.sleep(1.0)
        reader.cancel()
    copies = [m for m in seen if m["message_type"] == "committed_transcript_with_timestamps"]
    committed = [m for m in seen if m["message_type"] == "committed_transcript"]
    assert len(copies) == len(committed) >= 1
    for plain, copy in zip(committed, copies, strict=True):
        assert copy["text"] == plain["text"] and copy["language_code"] == "eng"
        assert copy["words"] is None  # no include_timestamps: upstream sends words null
    assert wer(utterance.transcript, " ".join(c["text"] for c in copies)).rate <= 0.15


async def test_words_carry_whispers_logprob(stt_server: RunningServer) -> None:
    url = (
        f"{stt_server.ws_url}/v1/speech-to-text/realtime?model_id=speechwire_whisper"
        "&include_timestamps=true&include_language_detection=true"
    )
    seen: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws:
        started = await until(ws, "session_started", seen)
        assert started["config"]["vad_commit_strategy"] == "manual"
        await send_all(ws, pcm_of("ls_1089-134691-0000.wav"))
        await ws.send(chunk(b"", commit=True))
        stamped = await until(ws, "committed_transcript_with_timestamps", seen, timeout=40)
    words = [w for w in stamped["words"] if w["type"] == "word"]
    assert words and all(isinstance(w["logprob"], float) and w["logprob"] <= 0 for w in stamped["words"])
    assert any(w["logprob"] < 0 for w in words)  # real probabilities, not the neutral 0.0
    assert stamped["language_code"] == "eng"


async def test_official_sdk_final_commit_after_a_vad_commit(
    stt_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Python SDK's helper in VAD mode, at real-time pace, then its ``commit()``."""
    from elevenlabs.client import AsyncElevenLabs
    from elevenlabs.realtime import AudioFormat, CommitStrategy, RealtimeEvents

    # The helper maps http:// to ws:// (elevenlabs.url_utils.build_ws_url), so plain HTTP works.
    client = AsyncElevenLabs(api_key="unused-locally", base_url=stt_server.http_url)
    names = ["librivox_0870.wav", "ls_1272-128104-0001.wav"]
    hypotheses = []
    for name in names:
        committed: list[str] = []
        errors: list[Any] = []
        closed: list[Any] = []
        connection = await client.speech_to_text.realtime.connect(
            {
                "model_id": "scribe_v2_realtime",
                "audio_format": AudioFormat.PCM_16000,
                "sample_rate": 16000,
                "commit_strategy": CommitStrategy.VAD,
                "vad_silence_threshold_secs": 0.5,
                "include_language_detection": False,
            }
        )
        connection.on(
            RealtimeEvents.COMMITTED_TRANSCRIPT, lambda data, out=committed: out.append(data["text"])
        )
        connection.on(RealtimeEvents.ERROR, errors.append)
        connection.on(RealtimeEvents.CLOSE, closed.append)
        async for piece in paced_chunks(pcm_of(name, tail_s=1.2), 16000, 100):
            await connection.send({"audio_base_64": base64.b64encode(piece.tobytes()).decode()})
        for _ in range(50):
            if committed:
                break
            await asyncio.sleep(0.1)
        spoken = len(committed)
        assert spoken, "no VAD commit"
        await connection.commit()  # what the SDK's examples do at the end: nothing is pending
        for _ in range(50):
            if len(committed) > spoken:
                break
            await asyncio.sleep(0.1)
        assert committed[spoken:] == [""], committed  # answered, empty
        await connection.send({"audio_base_64": base64.b64encode(bytes(3200)).decode()})
        await asyncio.sleep(0.3)
        assert not errors and not closed, (errors, closed)  # the session went on
        await connection.close()
        hypotheses.append(" ".join(t for t in committed if t))
    rate = corpus_wer(list(zip([MANIFEST[n].transcript for n in names], hypotheses, strict=True))).rate
    with capsys.disabled():
        print(f"\nPython SDK realtime (VAD, final commit): WER {rate:.3f} {hypotheses!r}")
    assert rate <= 0.08, (rate, hypotheses)  # measured 0.000 with Moonshine tiny


# --- item 7: a token minted with a key is the authorisation, from any Origin ---------------------


async def first_frame(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def test_key_minted_tokens_work_from_any_origin_page_tokens_do_not() -> None:
    running = start_server(
        Settings(
            tts_engines=["espeak"],
            stt_engines=["moonshine"],
            api_keys=[SecretStr(KEY)],
            page_tokens=True,
            allowed_origins=["https://demo.example"],
        )
    )
    try:
        mint = "/v1/single-use-token/realtime_scribe"
        url = f"{running.ws_url}/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&token="
        elsewhere = {"origin": "https://app.elsewhere.example"}
        async with httpx.AsyncClient(base_url=running.http_url) as http:
            backend = [(await http.post(mint, headers={"xi-api-key": KEY})).json()["token"] for _ in range(2)]
            page = (await http.post(mint, headers={"origin": "https://demo.example"})).json()["token"]
            page2 = (await http.post(mint, headers={"origin": "https://demo.example"})).json()["token"]
        assert (await first_frame(url + backend[0], elsewhere))["message_type"] == "session_started"
        assert (await first_frame(url + backend[1]))["message_type"] == "session_started"  # no Origin
        refused = await first_frame(url + page, elsewhere)
        assert refused["message_type"] == "auth_error" and "origin" in refused["error"].lower()
        ok = await first_frame(url + page2, {"origin": "https://demo.example"})
        assert ok["message_type"] == "session_started"
        # Without a token, a key from another Origin is still refused (a page must not use it).
        keyed = await first_frame(url.removesuffix("&token="), {**elsewhere, "xi-api-key": KEY})
        assert keyed["message_type"] == "auth_error"
    finally:
        running.stop()


async def test_a_dev_servers_tokens_keep_the_origin_check(stt_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=stt_server.http_url) as http:
        token = (await http.post("/v1/single-use-token/realtime_scribe")).json()["token"]
    url = f"{stt_server.ws_url}/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&token={token}"
    refused = await first_frame(url, {"origin": "https://evil.example"})
    assert refused["message_type"] == "auth_error"

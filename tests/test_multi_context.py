"""multi-stream-input: contexts, barge-in, the context limit, per-context keep-alive, close_socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import websockets

from speechwire.client.multi import ContextAudio, ContextFinished, MultiContextTTS
from speechwire.server.runner import RunningServer

LONG = (
    "This is a long answer that keeps going, sentence after sentence, so that there is plenty of audio "
    "still to come when the user interrupts it. It talks about the weather, the traffic and the news. "
)


def url(server: RunningServer, **query: str) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{server.ws_url}/v1/text-to-speech/joe/multi-stream-input" + (f"?{qs}" if qs else "")


async def test_interrupt_mid_sentence_sends_no_old_audio_after_the_close(server: RunningServer) -> None:
    frames: list[dict[str, Any]] = []
    async with websockets.connect(url(server, output_format="pcm_16000")) as ws:
        await ws.send(json.dumps({"text": LONG, "context_id": "a", "flush": True}))
        while True:  # wait for the first audio of context a
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            if frames[-1].get("audio"):
                break
        await ws.send(json.dumps({"context_id": "a", "close_context": True}))
        await ws.send(json.dumps({"text": "Sure, what do you need? ", "context_id": "b", "flush": True}))
        await ws.send(json.dumps({"close_socket": True}))
        try:
            while True:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
        except websockets.ConnectionClosed:
            pass
        assert ws.close_code == 1000
    final_a = next(i for i, f in enumerate(frames) if f.get("isFinal") and f["contextId"] == "a")
    assert not [f for f in frames[final_a:] if f.get("audio") and f["contextId"] == "a"]
    voiced_a = "".join(
        "".join(f["alignment"]["chars"]) for f in frames if f.get("audio") and f["contextId"] == "a"
    )
    assert len(voiced_a) < len(LONG)  # cut short: the rest was never synthesised
    voiced_b = "".join(
        "".join(f["alignment"]["chars"]) for f in frames if f.get("audio") and f["contextId"] == "b"
    )
    assert voiced_b == "Sure, what do you need? "
    assert frames[-1]["isFinal"] and frames[-1]["contextId"] == "b"


async def test_client_interrupt_drops_old_audio_and_measures_latency(server: RunningServer) -> None:
    async with MultiContextTTS(server.ws_url, "joe", output_format="pcm_16000") as tts:
        old = await tts.start_context(LONG, flush=True)
        events: list[ContextAudio | ContextFinished] = []
        closing = False
        async for event in tts:
            events.append(event)
            if isinstance(event, ContextAudio) and event.context_id == old and len(events) == 1:
                new = await tts.interrupt("Okay, stopping there. ")
            if isinstance(event, ContextAudio) and event.context_id != old and not closing:
                closing = True
                await tts.close_socket()
        assert {e.context_id for e in events if isinstance(e, ContextAudio)} >= {old, new}
        first_new = next(
            i for i, e in enumerate(events) if isinstance(e, ContextAudio) and e.context_id == new
        )
        assert not [e for e in events[first_new:] if isinstance(e, ContextAudio) and e.context_id == old]
        assert len(tts.latency.interrupt_to_first_audio) == 1
        assert 0 < tts.latency.interrupt_to_first_audio[0] < 2.0


async def test_sixth_context_is_refused(server: RunningServer) -> None:
    async with websockets.connect(url(server, output_format="pcm_16000")) as ws:
        for i in range(6):
            await ws.send(json.dumps({"text": " ", "context_id": f"c{i}"}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["code"] == 1008 and "Maximum simultaneous contexts" in frame["message"]
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1008


async def test_keep_alive_is_per_context(server: RunningServer) -> None:
    frames: list[dict[str, Any]] = []
    async with websockets.connect(url(server, output_format="pcm_16000", inactivity_timeout="1")) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "kept"}))
        await ws.send(json.dumps({"text": " ", "context_id": "idle"}))
        for _ in range(8):  # 2.4 s: kept alive, while "idle" times out
            await asyncio.sleep(0.3)
            await ws.send(json.dumps({"text": "", "context_id": "kept"}))
        await ws.send(json.dumps({"text": "Still here. ", "context_id": "kept", "flush": True}))
        await ws.send(json.dumps({"close_socket": True}))
        try:
            while True:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except websockets.ConnectionClosed:
            pass
    finals = [f["contextId"] for f in frames if f.get("isFinal")]
    assert finals[0] == "idle"  # closed by its own timeout, before the socket closed
    kept = "".join(
        "".join(f["alignment"]["chars"]) for f in frames if f.get("audio") and f["contextId"] == "kept"
    )
    assert kept == "Still here. "


async def test_close_socket_finishes_every_context(server: RunningServer) -> None:
    frames: list[dict[str, Any]] = []
    async with websockets.connect(url(server, output_format="pcm_16000")) as ws:
        await ws.send(json.dumps({"text": "First context speaking. ", "context_id": "one", "flush": True}))
        await ws.send(json.dumps({"text": "Second context speaking. ", "context_id": "two", "flush": True}))
        await ws.send(json.dumps({"close_socket": True}))
        try:
            while True:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
        except websockets.ConnectionClosed:
            pass
        assert ws.close_code == 1000
    for cid, text in (("one", "First context speaking. "), ("two", "Second context speaking. ")):
        said = "".join(
            "".join(f["alignment"]["chars"]) for f in frames if f.get("audio") and f["contextId"] == cid
        )
        assert said == text
    assert {f["contextId"] for f in frames if f.get("isFinal")} == {"one", "two"}

"""multi-stream-input: contexts, barge-in, the context limit, per-context keep-alive, close_socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import numpy as np
import websockets

from speechwire.client.multi import ContextAudio, ContextFailed, ContextFinished, MultiContextTTS
from speechwire.server.ops.runner import RunningServer

LONG = (
    "This is a long answer that keeps going, sentence after sentence, so that there is plenty of audio "
    "still to come when the user interrupts it. It talks about the weather, the traffic and the news. "
)


def url(server: RunningServer, **query: str) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{server.ws_url}/v1/text-to-speech/joe/multi-stream-input" + (f"?{qs}" if qs else "")


async def read_all(ws: Any, wait_s: float = 20) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), wait_s)))
    return frames


def voiced(frames: list[dict[str, Any]], cid: str) -> str:
    return "".join(
        "".join(f["alignment"]["chars"]) for f in frames if f.get("audio") and f.get("contextId") == cid
    )


async def test_close_mid_reply_finishes_its_audio_but_a_new_context_goes_first(
    server: RunningServer,
) -> None:
    # Upstream: close_context ends input, not audio. The closed context's rest is voiced, then its
    # final; the new context's jobs run ahead of it, so its first audio comes before that final.
    frames: list[dict[str, Any]] = []
    async with websockets.connect(url(server, output_format="pcm_16000")) as ws:
        await ws.send(json.dumps({"text": LONG * 2, "context_id": "a", "flush": True}))
        while True:  # wait for the first audio of context a
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            if frames[-1].get("audio"):
                break
        await ws.send(json.dumps({"context_id": "a", "close_context": True}))
        await ws.send(json.dumps({"text": "Sure, what do you need? ", "context_id": "b", "flush": True}))
        await ws.send(json.dumps({"close_socket": True}))
        frames += await read_all(ws)
        assert ws.close_code == 1000
    final_a = next(i for i, f in enumerate(frames) if f.get("isFinal") and f["contextId"] == "a")
    first_b = next(i for i, f in enumerate(frames) if f.get("audio") and f["contextId"] == "b")
    assert not [f for f in frames[final_a:] if f.get("audio") and f["contextId"] == "a"]
    assert voiced(frames, "a") == LONG * 2  # nothing sent before the close is lost
    assert first_b < final_a  # the open context jumped ahead of the closed one's rest
    assert voiced(frames, "b") == "Sure, what do you need? "
    assert {f["contextId"] for f in frames if f.get("isFinal")} == {"a", "b"}


async def test_flush_and_close_in_the_same_millisecond_voice_the_turn(server: RunningServer) -> None:
    # What pipecat and livekit send at the end of every turn (auto_mode, no trailing spaces).
    async with websockets.connect(url(server, output_format="pcm_16000", auto_mode="true")) as ws:
        for turn in ("t1", "t2"):
            await ws.send(json.dumps({"text": " ", "context_id": turn, "voice_settings": {"speed": 1.0}}))
            await ws.send(json.dumps({"text": "Hello there!", "context_id": turn}))
            await ws.send(json.dumps({"text": "I can help with that.", "context_id": turn}))
            await ws.send(json.dumps({"context_id": turn, "flush": True}))
            await ws.send(json.dumps({"context_id": turn, "close_context": True}))
            frames: list[dict[str, Any]] = []
            while not (frames and frames[-1].get("isFinal")):
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            assert voiced(frames, turn) == "Hello there!I can help with that."
            assert frames[-1]["contextId"] == turn and not frames[-1].get("audio")
            # A late keep-alive or flush of the finished context is ignored, not a new context.
            await ws.send(json.dumps({"text": "", "context_id": turn}))
            await ws.send(json.dumps({"text": ""}))  # pipecat's context-less keep-alive
        await ws.send(json.dumps({"close_socket": True}))
        rest = await read_all(ws, 10)
        assert not [f for f in rest if f.get("isFinal")]  # no context was opened by the keep-alive


async def test_camel_case_context_id_and_reinitialised_voice_settings(server: RunningServer) -> None:
    async with websockets.connect(url(server, output_format="pcm_16000")) as ws:
        text = "Counting one two three four five six. "
        await ws.send(json.dumps({"text": text, "contextId": "c", "voice_settings": {"speed": 1.2}}))
        await ws.send(json.dumps({"contextId": "c", "flush": True}))
        await ws.send(json.dumps({"text": text, "contextId": "c", "voice_settings": {"speed": 0.7}}))
        await ws.send(json.dumps({"contextId": "c", "close_context": True}))
        frames: list[dict[str, Any]] = []
        while not (frames and frames[-1].get("isFinal")):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    assert {f.get("contextId") for f in frames} == {"c"}  # not "default"
    assert voiced(frames, "c") == text * 2
    samples = [len(base64.b64decode(f["audio"])) // 2 for f in frames if f.get("audio")]
    chars = [len(f["alignment"]["chars"]) for f in frames if f.get("audio")]
    # The same text at speed 0.7 takes longer than at 1.2: the socket survived the new settings.
    split = next(i for i in range(len(chars) + 1) if sum(chars[:i]) >= len(text))
    fast, slow = sum(samples[:split]), sum(samples[split:])
    assert slow > 1.3 * fast, (fast, slow)


async def test_ssml_break_is_silence_not_speech(server: RunningServer) -> None:
    text = 'Wait for it. <break time="1s"/> Now. '
    async with websockets.connect(url(server, output_format="pcm_16000", enable_ssml_parsing="true")) as ws:
        await ws.send(json.dumps({"text": text, "context_id": "s", "flush": True}))
        await ws.send(json.dumps({"context_id": "s", "close_context": True}))
        frames: list[dict[str, Any]] = []
        while not (frames and frames[-1].get("isFinal")):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    assert voiced(frames, "s") == text  # the tag's characters are still covered by alignment
    pcm = np.frombuffer(b"".join(base64.b64decode(f["audio"]) for f in frames if f.get("audio")), np.int16)
    quiet = np.abs(pcm[: len(pcm) // 160 * 160].astype(np.int32)).reshape(-1, 160).max(axis=1) < 300
    longest = max(len(run) for run in "".join("q" if q else "." for q in quiet).split("."))
    assert longest * 10 >= 1000, longest  # at least 1 s of silence in 10 ms frames


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
        # The server still sends the old context's rest; the client dropped all of it.
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


async def test_client_with_reconnect_resumes_contexts_through_a_cut(server: RunningServer) -> None:
    """``MultiContextTTS(reconnect=True)``: a cut mid-audio re-opens the closed context with its
    unvoiced rest, so the turn's text is voiced exactly once and its final still arrives."""
    from speechwire.testing.faultproxy import FaultProxy, Plan

    proxy = await FaultProxy(
        "127.0.0.1", server.port, planner=lambda n: Plan(cut_after=30_000 if n == 0 else None)
    ).start()
    try:
        async with MultiContextTTS(f"ws://127.0.0.1:{proxy.port}", "espeak-en", reconnect=True) as tts:
            cid = await tts.start_context(LONG, flush=True)
            await tts.close_context()
            chunks: list[ContextAudio] = []
            async for event in tts:
                if isinstance(event, ContextFinished):
                    assert event.context_id == cid
                    break
                chunks.append(event)
            assert tts.link.reconnects == 1
    finally:
        await proxy.stop()
    assert proxy.cuts == 1
    assert "".join(c.alignment.text for c in chunks if c.alignment).rstrip() == LONG.rstrip()


async def test_client_reports_one_contexts_error_and_keeps_the_others(server: RunningServer) -> None:
    """A context the server ends on its own error (more than ``max_buffer_chars`` unflushed) is a
    ``ContextFailed`` then its ``ContextFinished`` for the application; the socket and the other
    context go on and its speech arrives in full."""
    async with MultiContextTTS(server.ws_url, "espeak-en", output_format="pcm_16000") as tts:
        greedy = await tts.start_context()
        await tts.send("word " * 20_001, context_id=greedy)  # 100,005 characters, never flushed
        polite = await tts.start_context("Still here after the other one failed.", flush=True)
        await tts.close_context(polite)
        failed: list[ContextFailed] = []
        finished: list[str] = []
        voiced = ""
        async for event in tts:
            if isinstance(event, ContextFailed):
                failed.append(event)
            elif isinstance(event, ContextFinished):
                finished.append(event.context_id)
                if polite in finished:
                    break
            elif event.context_id == polite and event.alignment is not None:
                voiced += "".join(event.alignment.chars)
        assert [(f.context_id, f.error) for f in failed] == [(greedy, "message_too_large")]
        assert greedy in finished and polite in finished
        assert voiced.strip() == "Still here after the other one failed."
        assert tts.state.value == "open"

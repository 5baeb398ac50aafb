"""``speechwire bench barge-in``: interrupt → first audio of the new context, over one socket.

Each turn sends a whole reply of several long sentences to a ``multi-stream-input`` context with
``flush`` (so all of it is released for synthesis), waits for its first audio, lets the "user"
listen for a random 0.3–1.5 s, then interrupts: ``close_context`` on the old context and a new
context with a short answer, in one go, as a voice agent does. Timed at the client: from the
interrupt to the new context's first audio chunk. The server still voices the old reply (the
closed context's final comes after its audio, as upstream); the client drops it. The next turn
starts once both contexts have sent their finals, so turns do not overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import defaultdict
from dataclasses import asdict, dataclass

from speechwire.bench.harness import machine, server_url, spread, table, write_json
from speechwire.client.latency import percentile
from speechwire.client.multi import ContextAudio, ContextFinished, MultiContextTTS
from speechwire.consoles import stdout_console

REPLY = (
    "Every night for forty years the old keeper climbed the narrow stairs of the lighthouse, lit the "
    "great lamp, and watched the ships pass safely through the dark and stormy waters of the bay. "
    "He kept a logbook of every vessel that went by, with its name, its flag and the hour it passed, "
    "and the pages filled a whole shelf of the little room at the bottom of the tower. "
    "When the storms came in from the west he stayed awake until morning, listening to the wind, "
    "and more than once he rowed out himself to bring sailors home from the rocks below the cliff. "
    "Now the lamp turns by itself and nobody lives in the tower, but the logbooks are still there, "
    "and visitors read them in the summer when the sea is calm and the evenings are long. "
)
ANSWERS = ["Okay, stopping.", "Sorry, go ahead.", "Right, let me check that instead."]


@dataclass
class BargeInResult:
    turns: int
    reply_chars: int
    interrupt_p50_ms: float
    interrupt_p95_ms: float
    interrupt_max_ms: float
    reply_first_audio_p50_ms: float
    dropped_chunks: int


async def measure(url: str, voice: str, fmt: str, turns: int, seed: int) -> BargeInResult:
    rng = random.Random(seed)
    first_audio: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
    finished: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
    async with MultiContextTTS(url, voice, output_format=fmt) as tts:

        async def listen() -> None:
            async for event in tts:
                if isinstance(event, ContextAudio):
                    first_audio[event.context_id].set()
                elif isinstance(event, ContextFinished):
                    finished[event.context_id].set()

        listener = asyncio.create_task(listen())
        try:
            for turn in range(turns + 1):  # turn 0 warms up and is not counted
                old = await tts.start_context(REPLY, flush=True)
                await asyncio.wait_for(first_audio[old].wait(), 20)
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                new = await tts.interrupt(ANSWERS[turn % len(ANSWERS)] + " ")
                await asyncio.wait_for(first_audio[new].wait(), 20)
                await tts.close_context(new)
                await asyncio.wait_for(finished[new].wait(), 60)
                while old in tts.cancelled_contexts:  # noqa: ASYNC110 (the client swallows that final)
                    await asyncio.sleep(0.01)
                if turn == 0:
                    tts.latency.interrupt_to_first_audio.clear()
                    tts.latency.first_audio.clear()
        finally:
            listener.cancel()
        lat = tts.latency.interrupt_to_first_audio
        reply_ttfa_ms = 1000 * percentile(tts.latency.first_audio[0::2], 50)
        return BargeInResult(len(lat), len(REPLY), *spread(lat, 1000), reply_ttfa_ms, tts.dropped_chunks)


def run_bargein_bench(args: argparse.Namespace) -> int:
    with server_url(args.url, stt_engines=[]) as url:
        r = asyncio.run(measure(url, args.voice, args.format, args.turns, args.seed))
    title = (
        f"Barge-in over multi-stream-input: {r.turns} turns, old reply of "
        f"{r.reply_chars} chars sent and flushed before the interrupt"
    )
    columns = ("interrupt → first audio p50 ms", "p95 ms", "max ms", "reply TTFA p50 ms", "dropped")
    ms = [f"{v:.1f}" for v in (r.interrupt_p50_ms, r.interrupt_p95_ms, r.interrupt_max_ms)]
    row = (*ms, f"{r.reply_first_audio_p50_ms:.1f}", r.dropped_chunks)
    stdout_console().print(table(title, columns, [row], right_from=0))
    write_json(args.json, {"machine": machine(), "barge_in": asdict(r)})
    return 0

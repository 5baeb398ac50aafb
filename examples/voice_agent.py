"""A voice agent's speaking side: LLM text word by word, interrupted by the user (barge-in).

The agent streams a reply into one context of a ``multi-stream-input`` socket as an LLM would
(a word every 30 ms). Partway through, a simulated user starts talking: the agent interrupts —
closes the context and answers in a new one. The server still voices the closed context's text
(upstream does too: ``close_context`` ends input, not audio) but schedules it behind the new
context; the client (``MultiContextTTS.interrupt``) drops every late chunk of the interrupted
context until its final. Printed per turn: time to first audio of the reply, and time from the
interrupt to the new reply's first audio.

Run against a server:          .venv/bin/python examples/voice_agent.py --url ws://127.0.0.1:8000
Or let it start one in-process: .venv/bin/python examples/voice_agent.py --turns 30
"""

from __future__ import annotations

import argparse
import asyncio
import random

from speechwire.client.latency import percentile
from speechwire.client.multi import ContextAudio, MultiContextTTS

REPLIES = [
    "Sure. The forecast for tomorrow is sunny in the morning, with clouds building in the afternoon "
    "and a chance of rain in the evening, so you may want to take an umbrella with you.",
    "I found three Italian restaurants near you. The closest one is a ten minute walk away, it opens "
    "at six, and the reviews mention the fresh pasta and the quiet garden at the back.",
    "Your next meeting is with the design team at three o'clock in the small conference room, and "
    "after that you have a call with the supplier about the delivery dates for next month.",
]
ANSWERS = ["Okay, stopping.", "Sorry, go ahead.", "Right, let me check that instead."]


async def llm_words(text: str, delay_s: float = 0.03) -> list[str]:
    await asyncio.sleep(0)
    return [w + " " for w in text.split()]


async def one_turn(
    tts: MultiContextTTS, reply: str, answer: str, barge_in_after_s: float
) -> tuple[float, float]:
    """Speak ``reply`` word by word, interrupt after ``barge_in_after_s`` of audio, answer."""
    first_audio = asyncio.Event()
    new_context: list[str] = []
    done = asyncio.Event()

    async def listen() -> None:
        async for event in tts:
            if isinstance(event, ContextAudio):
                if not first_audio.is_set():
                    first_audio.set()
                if new_context and event.context_id == new_context[0]:
                    done.set()
                    return

    listener = asyncio.create_task(listen())
    await tts.start_context()
    for word in await llm_words(reply):
        await tts.send(word)
        await asyncio.sleep(0.03)
        if word.rstrip().endswith((",", ".")):
            await tts.flush()
    await asyncio.wait_for(first_audio.wait(), 10)
    await asyncio.sleep(barge_in_after_s)  # the user starts talking while the agent speaks
    new_context.append(await tts.interrupt(answer + " "))
    await asyncio.wait_for(done.wait(), 10)
    listener.cancel()
    await tts.close_context()
    return tts.latency.first_audio[-2] if len(tts.latency.first_audio) > 1 else float(
        "nan"
    ), tts.latency.interrupt_to_first_audio[-1]


async def main(url: str | None, turns: int) -> None:
    running = None
    if url is None:
        from speechwire.config import Settings
        from speechwire.server.ops.runner import start_server

        running = start_server(Settings(dev=True, stt_engines=[]))
        url = running.ws_url
    rng = random.Random(5)
    try:
        async with MultiContextTTS(url, "joe", output_format="pcm_22050") as tts:
            for turn in range(turns):
                ttfa, interrupt = await one_turn(
                    tts, REPLIES[turn % 3], ANSWERS[turn % 3], rng.uniform(0.3, 1.2)
                )
                print(
                    f"turn {turn + 1:2d}: reply first audio {1000 * ttfa:6.1f} ms, "
                    f"interrupt → new reply's first audio {1000 * interrupt:6.1f} ms"
                )
            lat = tts.latency.interrupt_to_first_audio
            print(
                f"interrupt → first audio of the new context over {len(lat)} turns: "
                f"p50 {1000 * percentile(lat, 50):.1f} ms, p95 {1000 * percentile(lat, 95):.1f} ms; "
                f"late chunks of closed contexts dropped by the client: {tts.dropped_chunks}"
            )
    finally:
        if running is not None:
            running.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=None)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.turns))

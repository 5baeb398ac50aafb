"""``speechwire bench tts-wer``: intelligibility of synthesised speech, judged by Whisper tiny.en.

Streams each sentence through ``stream-input`` (so the quick first phrase and its seam are
included), then transcribes it. Also synthesises each sentence whole, straight from the engine,
to show what the seam costs (if anything).
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

from speechwire.audio.resample import resample
from speechwire.bench.harness import machine, server_url, write_json
from speechwire.bench.wer import corpus_wer
from speechwire.client.tts import TextToSpeechStream
from speechwire.engines.base import SynthesisOptions
from speechwire.engines.piper import PiperEngine
from speechwire.engines.whisper import WhisperEngine

SENTENCES = [
    "The weather today will be sunny with a high of seventy degrees.",
    "Your meeting with the design team has been moved to three o'clock.",
    "I found two coffee shops within walking distance of your hotel.",
    "Please remember to bring your passport and your boarding pass.",
    "The train to Boston leaves from platform four in ten minutes.",
    "Would you like me to read the rest of the message out loud?",
    "Turn left at the next intersection and continue for half a mile.",
    "Your package was delivered to the front door this morning.",
    "I have added milk, eggs and bread to your shopping list.",
    "The museum opens at nine and closes at five on weekdays.",
]


async def streamed(url: str, text: str) -> np.ndarray:
    async with TextToSpeechStream(url, "joe", output_format="pcm_16000") as tts:
        await tts.send(text + " ", flush=True)
        await tts.end()
        audio = b"".join([c.audio async for c in tts])
    return np.frombuffer(audio, np.int16)


def run_tts_wer_bench(args: argparse.Namespace) -> int:
    whisper = WhisperEngine()
    piper = PiperEngine()
    stream_pairs: list[tuple[str, str]] = []
    whole_pairs: list[tuple[str, str]] = []
    with server_url(None, tts_engines=["piper"]) as url:
        for sentence in SENTENCES:
            heard = whisper.transcribe(asyncio.run(streamed(url, sentence))).text
            stream_pairs.append((sentence, heard))
            whole = piper.synthesize(sentence, "joe", SynthesisOptions())
            pcm16k = resample(whole.pcm, whole.sample_rate, 16000)
            whole_pairs.append((sentence, whisper.transcribe(pcm16k).text))
            print(f"{sentence}\n  streamed: {heard}")
    s, w = corpus_wer(stream_pairs), corpus_wer(whole_pairs)
    print(f"WER streamed through stream-input: {s.rate:.1%} ({s.errors}/{s.words})")
    print(f"WER whole sentence from the engine: {w.rate:.1%} ({w.errors}/{w.words})")
    figures = {
        name: {"wer": r.rate, "errors": r.errors, "words": r.words}
        for name, r in (("streamed", s), ("whole", w))
    }
    write_json(args.json, {"machine": machine(), "tts_wer": figures})
    return 0

"""Command line: ``speechwire serve``, ``say`` and ``bench``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from rich.console import Console

console = Console(stderr=True)

DEFAULT_URL = "ws://127.0.0.1:8000"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from speechwire.config import Settings
    from speechwire.server.app import create_app

    overrides = {}
    if args.engines:
        overrides["tts_engines"] = [e.strip() for e in args.engines.split(",") if e.strip()]
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        ws_max_size=max(16 * 1024 * 1024, 2 * settings.max_message_bytes),
        log_level="info",
    )
    return 0


async def _say(args: argparse.Namespace) -> int:
    import numpy as np

    from speechwire.audio.codecs import decode_to_pcm
    from speechwire.audio.formats import AudioFormat
    from speechwire.audio.wav import write_wav
    from speechwire.client.tts import TextToSpeechStream

    text = " ".join(args.text) if args.text else sys.stdin.read()
    if not text.strip():
        console.print("[red]nothing to say[/red]")
        return 2
    fmt = AudioFormat.parse(args.format)
    stream = TextToSpeechStream(args.url, args.voice, model_id=args.model, output_format=fmt.name)
    audio = bytearray()
    async with stream:
        await stream.send(text if text.endswith(" ") else text + " ", flush=True)
        await stream.end()
        async for chunk in stream:
            audio += chunk.audio
    pcm, rate = decode_to_pcm(bytes(audio), fmt)
    write_wav(args.out, np.asarray(pcm, dtype=np.int16), rate)
    ttfa = stream.latency.time_to_first_audio
    console.print(
        f"wrote {args.out}: {len(pcm) / rate:.2f} s at {rate} Hz; time to first audio {1000 * ttfa:.0f} ms"
        if ttfa is not None
        else f"wrote {args.out}"
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from speechwire.bench.tts import run_tts_bench

    return run_tts_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechwire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server with local engines")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--ssl-certfile", default=None, help="serve TLS (wss://, https://) with this certificate"
    )
    serve.add_argument("--ssl-keyfile", default=None)
    serve.add_argument("--engines", default=None, help="comma-separated TTS engines (default: piper,espeak)")
    serve.set_defaults(func=_serve)

    say = sub.add_parser("say", help="speak text (arguments or stdin) into a WAV file through a server")
    say.add_argument("text", nargs="*")
    say.add_argument("--out", "-o", default="say.wav")
    say.add_argument("--url", default=DEFAULT_URL)
    say.add_argument("--voice", default="joe")
    say.add_argument("--model", default=None)
    say.add_argument("--format", default="pcm_22050", help="output_format on the wire (decoded to WAV)")
    say.set_defaults(func=lambda a: asyncio.run(_say(a)))

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    tts = bench_sub.add_parser("tts", help="time to first audio and real-time factor of streaming TTS")
    tts.add_argument("--runs", type=int, default=30)
    tts.add_argument("--concurrency", default="1,4,8", help="session counts to measure")
    tts.add_argument("--format", default="pcm_22050")
    tts.add_argument("--voice", default="joe")
    tts.add_argument("--url", default=None, help="benchmark a running server instead of starting one")
    tts.add_argument("--json", default=None, help="also write the results to this JSON file")
    tts.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: ``speechwire serve``, ``say`` and ``bench``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from speechwire.client.reconnect import ReconnectPolicy

console = Console(stderr=True)

DEFAULT_URL = "ws://127.0.0.1:8000"


API_KEY_HELP = "a key of the server (default: $SPEECHWIRE_API_KEY; a dev server needs none)"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from speechwire.config import Settings
    from speechwire.server.app import InsecureConfiguration, create_app
    from speechwire.server.ops.runner import DrainingServer, check_binding

    overrides: dict[str, object] = {}
    if args.engines:
        overrides["tts_engines"] = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.dev:
        overrides["dev"] = True
    settings = Settings(**overrides)  # type: ignore[arg-type]
    from speechwire.server.ops import logs

    logs.configure(args.log_level, args.log_format)
    try:
        check_binding(settings, args.host)
        app = create_app(settings)
    except InsecureConfiguration as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        ws_max_size=max(16 * 1024 * 1024, 2 * settings.max_message_bytes),
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        log_level=args.log_level,
        log_config=None,  # uvicorn's loggers go through ours: same format, session ids, redaction
    )
    DrainingServer(config, settings.drain_s).run()
    return 0


def _reconnect() -> ReconnectPolicy:
    """``say`` and ``transcribe`` survive a cut connection (each word voiced, each segment
    committed once); 3 failed attempts in a row end them, so a server that is not running is
    reported in a second, not after a minute of backoff."""
    from speechwire.client.reconnect import GiveUpPolicy, ReconnectPolicy

    return ReconnectPolicy(GiveUpPolicy(max_attempts=3))


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
    # Reconnecting: a connection cut mid-audio resumes with the words not yet voiced, each once.
    stream = TextToSpeechStream(
        args.url,
        args.voice,
        model_id=args.model,
        output_format=fmt.name,
        api_key=args.api_key,
        reconnect=_reconnect(),
    )
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


async def _transcribe(args: argparse.Namespace) -> int:
    import contextlib
    import json
    import time

    from rich.live import Live
    from rich.text import Text

    from speechwire.audio.resample import resample
    from speechwire.audio.wav import read_audio_file
    from speechwire.client.errors import ConnectionClosedError
    from speechwire.client.stt import (
        CommittedTranscript,
        PartialTranscript,
        RealtimeTranscriber,
        paced_chunks,
    )

    pcm, rate = read_audio_file(args.file)
    pcm16k = resample(pcm, rate, 16000)
    stt = RealtimeTranscriber(
        args.url,
        model_id=args.model,
        commit_strategy="vad",
        vad_silence_threshold_secs=args.vad_silence,
        include_timestamps=args.json,
        api_key=args.api_key,
        reconnect=_reconnect(),  # a cut resends the audio not yet committed
    )
    out = Console()
    start = time.perf_counter()
    try:
        await stt.connect()
    except (OSError, ConnectionClosedError) as exc:
        console.print(f"[red]cannot reach {args.url}: {exc}. Start one with `speechwire serve`.[/red]")
        return 1

    async def send() -> None:
        await stt.stream_pcm(paced_chunks(pcm16k, 16000, 100, realtime=args.realtime, tail_silence_s=1.5))
        # Whatever the VAD has not committed yet is committed by hand at the end of the file.
        await asyncio.sleep(args.vad_silence + 0.5)
        if stt._speech_since_commit:
            await stt.commit()
            await asyncio.sleep(1.0)

    with Live(Text(""), console=out, transient=True, auto_refresh=False, redirect_stdout=False) as live:

        async def read() -> None:
            async for event in stt.events():
                at = event.received_at - start if hasattr(event, "received_at") else 0.0
                if args.json:
                    kind = "committed" if isinstance(event, CommittedTranscript) else "partial"
                    line = {"type": kind, "text": getattr(event, "text", ""), "t": round(at, 3)}
                    print(json.dumps(line), flush=True)
                elif isinstance(event, PartialTranscript):
                    live.update(Text(f"… {event.text}", style="dim"), refresh=True)
                elif isinstance(event, CommittedTranscript):
                    live.update(Text(""), refresh=True)
                    out.print(f"[{at:6.2f}s] {event.text}")

        reader = asyncio.create_task(read())
        await send()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    await stt.close()
    lat = stt.latency.end_of_speech_to_commit
    if lat and not args.json:
        console.print(f"end of speech → committed: {', '.join(f'{1000 * x:.0f} ms' for x in lat)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.bench == "load":
        from speechwire.bench.load import run_load_bench

        return run_load_bench(args)
    if args.bench == "soak":
        from speechwire.bench.load import run_soak_bench

        return run_soak_bench(args)
    if args.bench == "browser":
        from speechwire.bench.browser import run_browser_bench

        return run_browser_bench(args)
    if args.bench == "barge-in":
        from speechwire.bench.bargein import run_bargein_bench

        return run_bargein_bench(args)
    if args.bench == "stt":
        from speechwire.bench.stt import run_stt_bench

        return run_stt_bench(args)
    if args.bench == "reconnect":
        from speechwire.bench.reconnect import run_reconnect_bench

        return run_reconnect_bench(args)
    if args.bench == "tts-wer":
        from speechwire.bench.tts_wer import run_tts_wer_bench

        return run_tts_wer_bench(args)
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
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development: no API keys needed, everyone admitted (only on a loopback address)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="json: one object per line"
    )
    serve.set_defaults(func=_serve)

    say = sub.add_parser("say", help="speak text (arguments or stdin) into a WAV file through a server")
    say.add_argument("text", nargs="*")
    say.add_argument("--out", "-o", default="say.wav")
    say.add_argument("--url", default=DEFAULT_URL)
    say.add_argument("--voice", default="joe")
    say.add_argument("--model", default=None)
    say.add_argument("--format", default="pcm_22050", help="output_format on the wire (decoded to WAV)")
    say.add_argument("--api-key", default=os.environ.get("SPEECHWIRE_API_KEY"), help=API_KEY_HELP)
    say.set_defaults(func=lambda a: asyncio.run(_say(a)))

    tr = sub.add_parser(
        "transcribe", help="transcribe an audio file (WAV/FLAC/MP3, any rate) through a server"
    )
    tr.add_argument("file")
    tr.add_argument("--realtime", action="store_true", help="send at real-time pace, like a microphone")
    tr.add_argument("--json", action="store_true", help="one JSON object per event on stdout")
    tr.add_argument("--url", default=DEFAULT_URL)
    tr.add_argument("--model", default="scribe_v2_realtime")
    tr.add_argument("--vad-silence", type=float, default=0.5, help="seconds of silence that commit (0.3-3)")
    tr.add_argument("--api-key", default=os.environ.get("SPEECHWIRE_API_KEY"), help=API_KEY_HELP)
    tr.set_defaults(func=lambda a: asyncio.run(_transcribe(a)))

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    tts = bench_sub.add_parser("tts", help="time to first audio and real-time factor of streaming TTS")
    tts.add_argument("--runs", type=int, default=30)
    tts.add_argument("--concurrency", default="1,4,8", help="session counts to measure")
    tts.add_argument("--format", default="pcm_22050")
    tts.add_argument("--voice", default="joe")
    tts.add_argument("--url", default=None, help="benchmark a running server instead of starting one")
    tts.add_argument("--json", default=None, help="also write the results to this JSON file")
    tts.add_argument(
        "--relay", action="store_true", help="compare straight to an upstream server vs through a relay to it"
    )
    tts.set_defaults(func=_bench)
    barge = bench_sub.add_parser(
        "barge-in", help="interrupt → first audio of the new context, old reply fully sent and flushed"
    )
    barge.add_argument("--turns", type=int, default=30)
    barge.add_argument("--format", default="pcm_22050")
    barge.add_argument("--voice", default="joe")
    barge.add_argument("--seed", type=int, default=5)
    barge.add_argument("--url", default=None, help="benchmark a running server instead of starting one")
    barge.add_argument("--json", default=None, help="also write the results to this JSON file")
    barge.set_defaults(func=_bench)
    stt = bench_sub.add_parser("stt", help="dev-set WER, end of speech to commit, partial cadence, capacity")
    stt.add_argument(
        "--speech-dir", default=None, help="folder with manifest.tsv (default: ../shared/speech/dev)"
    )
    stt.add_argument("--engine", default="moonshine", help="moonshine or whisper")
    stt.add_argument("--streams", default="1,2,4,6", help="concurrent real-time streams to try for capacity")
    stt.add_argument(
        "--parallel", type=int, default=4, help="dev-set files streamed at once for the WER pass"
    )
    stt.add_argument("--url", default=None)
    stt.add_argument("--json", default=None)
    stt.add_argument("--quick", action="store_true", help="4 files for WER and latency (for trying settings)")
    stt.set_defaults(func=_bench)
    load = bench_sub.add_parser("load", help="how many TTS sessions and STT streams stay real-time")
    load.add_argument("--tts", default="1,2,4,6,8,12", help="concurrent TTS sessions to try")
    load.add_argument("--stt", default="2,4,6,8", help="concurrent STT streams to try")
    load.add_argument("--speech-dir", default=None)
    load.add_argument("--json", default=None)
    load.set_defaults(func=_bench)
    soak = bench_sub.add_parser("soak", help="mixed sessions for a while: errors and memory growth")
    soak.add_argument("--minutes", type=float, default=10.0)
    soak.add_argument("--json", default=None)
    soak.set_defaults(func=_bench)
    web = bench_sub.add_parser(
        "browser", help="the demo page in Chromium: PCM vs WebM capture latency, playback latency"
    )
    web.add_argument("--files", type=int, default=5, help="dev recordings per capture mode")
    web.add_argument("--runs", type=int, default=20, help="typed replies played")
    web.add_argument("--speech-dir", default=None)
    web.add_argument("--url", default=None, help="a running server's http URL instead of starting one")
    web.add_argument("--screenshots", default=None, help="folder for a screenshot of the page in use")
    web.add_argument("--json", default=None)
    web.set_defaults(func=_bench)
    rec = bench_sub.add_parser(
        "reconnect", help="resumable TTS client: loss → next open connection, network cut and server kill"
    )
    rec.add_argument("--cuts", type=int, default=30, help="network cuts through a loopback proxy")
    rec.add_argument("--restarts", type=int, default=10, help="server kills (SIGKILL) and restarts")
    rec.add_argument("--json", default=None)
    rec.set_defaults(func=_bench)
    wer = bench_sub.add_parser("tts-wer", help="WER of synthesised speech (streamed and whole), by Whisper")
    wer.add_argument("--json", default=None)
    wer.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())

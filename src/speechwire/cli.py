"""speechwire: the ElevenLabs realtime protocols on local engines.

Commands: serve (run the server), say (text to a WAV file), transcribe (an audio file to text),
bench (benchmarks). Keys: the server reads its accepted keys from SPEECHWIRE_API_KEYS (a JSON
list); the clients (say, transcribe) send one key, from --api-key or SPEECHWIRE_API_KEY.
Errors are one line; --verbose shows the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from speechwire.consoles import stderr_console, stdout_console

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from rich.progress import Progress

    from speechwire.client.reconnect import ReconnectPolicy

console = stderr_console()

DEFAULT_URL = "ws://127.0.0.1:8000"

T = TypeVar("T")

API_KEY_HELP = (
    "the key this client sends (default: $SPEECHWIRE_API_KEY, read when the command runs; a "
    "--dev server needs none). The server's accepted keys are SPEECHWIRE_API_KEYS, plural"
)
CAFILE_HELP = (
    "for wss:// or https:// URLs: trust the CA certificates in this PEM file (e.g. a local "
    "test CA); the system trust store and $SSL_CERT_FILE are used otherwise"
)
AUTH_ERRORS = ("invalid_api_key", "authentication_required", "auth_error")


class CLIError(Exception):
    """A failure the user can act on: its message is printed as one line (exit ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def explain(exc: BaseException, url: str | None) -> str:
    """One line for an exception: what happened and what to do about it."""
    import ssl

    import websockets

    from speechwire.client.errors import ConnectionClosedError, ServerError
    from speechwire.client.stt import TranscriptIncomplete

    where = url or "the server"
    if isinstance(exc, CLIError):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"cannot verify the certificate of {where} ({exc.verify_message}): "
            "pass --cafile CA.pem (or set SSL_CERT_FILE) to trust its CA"
        )
    if isinstance(exc, websockets.InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return f"{where} refused the key (HTTP {status}): pass --api-key KEY or set SPEECHWIRE_API_KEY"
        return f"{where} refused the connection (HTTP {status}): check --url"
    if isinstance(exc, ServerError):
        if exc.error in AUTH_ERRORS:
            return (
                f"{where} refused the key ({exc.error}): pass --api-key KEY or set "
                "SPEECHWIRE_API_KEY to one of the server's SPEECHWIRE_API_KEYS"
            )
        return f"{where} reported {exc.error}: {exc.message}"
    if isinstance(exc, TranscriptIncomplete):
        return f"transcript incomplete: {exc} (a busy server? run again, or raise its STT workers)"
    if isinstance(exc, ConnectionClosedError):
        return (
            f"lost the connection to {where} ({exc}); the output is incomplete: "
            "check the server (`speechwire serve`) and run again"
        )
    if isinstance(exc, OSError | TimeoutError | websockets.InvalidHandshake):
        return f"cannot reach {where} ({exc}): is it running? Start one with `speechwire serve --dev`"
    return f"unexpected {type(exc).__name__}: {exc} (run with --verbose for the traceback)"


def _cafile(path: str | None) -> str | None:
    """``--cafile``, checked here: a missing file would otherwise surface as a connection error."""
    if path is not None and not os.path.isfile(path):
        raise CLIError(
            f"--cafile {path}: no such file (give the PEM file of the CA that signed the server)", 2
        )
    return path


async def _connecting(opening: Awaitable[T], url: str) -> T:
    """Open a client. A socket that closes before the stream starts means nothing usable listens
    at ``url`` (not lost output); unreachable hosts and refusals are ``explain``'s."""
    import websockets

    from speechwire.client.errors import ConnectionClosedError

    try:
        return await opening
    except ConnectionClosedError as exc:
        raise CLIError(
            f"cannot reach {url} ({exc}): is the server running? Start one with `speechwire serve --dev`"
        ) from exc
    except websockets.InvalidURI as exc:
        raise CLIError(f"not a WebSocket URL: {url} (use ws://, wss://, http:// or https://)", 2) from exc


def _serve(args: argparse.Namespace) -> int:
    from rich.text import Text

    from speechwire.config import BadSetting, Settings
    from speechwire.server.app import InsecureConfiguration, create_app
    from speechwire.server.ops.runner import DrainingServer, check_binding, uvicorn_config

    overrides: dict[str, object] = {}
    if args.engines:
        overrides["tts_engines"] = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.dev:
        overrides["dev"] = True
    try:
        settings = Settings(**overrides)
    except BadSetting as exc:  # one line naming the variable and its form, never its value
        console.print(Text(str(exc), style="red"), soft_wrap=True)
        return 2
    from speechwire.server.ops import logs

    logs.configure(args.log_level, args.log_format)
    try:
        check_binding(settings, args.host)
        app = create_app(settings)
    except InsecureConfiguration as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    config = uvicorn_config(
        settings,
        app,
        args.host,
        args.port,
        args.ssl_certfile,
        args.ssl_keyfile,
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


def _say_progress() -> Progress:
    """Characters voiced of the total (from the server's alignment) and audio received, so 500
    words are not a silent wait. On stderr, and only on a terminal: piped or redirected, ``say``
    prints its final line alone. Transient, so that line is all that stays on screen."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("characters  {task.fields[audio]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


async def _say(args: argparse.Namespace) -> int:
    import numpy as np

    from speechwire.audio.codecs import decode_to_pcm
    from speechwire.audio.formats import AudioFormat
    from speechwire.audio.wav import write_wav
    from speechwire.client.tts import TextToSpeechStream

    text = " ".join(args.text) if args.text else sys.stdin.read()
    if not text.strip():
        raise CLIError("nothing to say: give text as arguments or on stdin", 2)
    try:
        fmt = AudioFormat.parse(args.format)
    except ValueError as exc:
        raise CLIError(f"--format {args.format}: {exc}", 2) from exc
    stream = TextToSpeechStream(
        args.url,
        args.voice,
        model_id=args.model,
        output_format=fmt.name,
        api_key=args.api_key or os.environ.get("SPEECHWIRE_API_KEY"),
        cafile=_cafile(args.cafile),
        reconnect=_reconnect(),
    )
    audio = bytearray()
    await _connecting(stream.connect(), args.url)
    per_second = (fmt.bytes_per_sample or 0) * fmt.sample_rate  # 0: compressed, length unknown
    try:
        with _say_progress() as progress:
            task = progress.add_task("voicing", total=len(text), audio="")
            await stream.send(text if text.endswith(" ") else text + " ", flush=True)
            await stream.end()
            async for chunk in stream:
                audio += chunk.audio
                seconds = f"{len(audio) / per_second:.1f} s of audio" if per_second else ""
                progress.update(task, completed=min(len(stream.voiced_text), len(text)), audio=seconds)
            progress.update(task, completed=len(text))
    finally:
        await stream.close()
    pcm, rate = decode_to_pcm(bytes(audio), fmt)
    write_wav(args.out, np.asarray(pcm, dtype=np.int16), rate)
    ttfa = stream.latency.time_to_first_audio
    console.print(
        f"wrote {args.out}: {len(pcm) / rate:.2f} s at {rate} Hz; time to first audio {1000 * ttfa:.0f} ms"
        if ttfa is not None
        else f"wrote {args.out}"
    )
    return 0


def _read_input(path: str) -> tuple[npt.NDArray[np.int16], int]:
    """The audio file, or a CLIError saying why it cannot be read (before any connection)."""
    from speechwire.audio.wav import read_audio_file

    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}", 2)
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder: give an audio file (WAV, FLAC, MP3, …)", 2)
    if not os.access(path, os.R_OK):
        raise CLIError(f"cannot read {path}: permission denied", 2)
    try:
        pcm, rate = read_audio_file(path)
    except Exception as exc:
        raise CLIError(
            f"{path} is not audio we can decode ({exc}): give a WAV, FLAC, MP3 or Ogg file", 2
        ) from exc
    if len(pcm) == 0:
        raise CLIError(f"{path} holds no audio", 2)
    return pcm, rate


FAST_SEGMENT_S = 30.0
"""Sent as fast as possible, the file is committed by the client, at the first pause after this
many seconds (and at 60 s regardless): each commit is answered exactly once, so the client knows
when the last one is in. The server's VAD cannot do that job here (its commits are
indistinguishable from answers), nor its 90 s cap (the same)."""


def _commit_points(pcm: npt.NDArray[np.int16], rate: int, chunk: int) -> set[int]:
    """Chunk indices after which the fast path commits: at a pause (0.3 s of chunks quieter than
    speech) once ``FAST_SEGMENT_S`` are uncommitted, and at 60 s without one."""
    from speechwire.client.stt import last_loud_sample

    points: set[int] = set()
    since, quiet = 0.0, 0.0
    step_s = chunk / rate
    for i, offset in enumerate(range(0, len(pcm), chunk)):
        loud = last_loud_sample(pcm[offset : offset + chunk], rate) is not None
        quiet = 0.0 if loud else quiet + step_s
        since += step_s
        if (since >= FAST_SEGMENT_S and quiet >= 0.3) or since >= 60.0:
            points.add(i)
            since = 0.0
    return points


async def _transcribe(args: argparse.Namespace) -> int:
    import json
    import time

    from rich.live import Live
    from rich.text import Text

    from speechwire.audio.resample import resample
    from speechwire.client.stt import (
        CommittedTranscript,
        PartialTranscript,
        RealtimeTranscriber,
        paced_chunks,
    )

    pcm, rate = _read_input(args.file)
    pcm16k = resample(pcm, rate, 16000)
    # Paced like a microphone, the server's VAD commits (as a live app would use it); sent as
    # fast as possible, the client commits (see FAST_SEGMENT_S). Either way ``finish()`` returns
    # only once the server has answered the last commit, so no text is lost.
    stt = RealtimeTranscriber(
        args.url,
        model_id=args.model,
        commit_strategy="vad" if args.realtime else "manual",
        vad_silence_threshold_secs=args.vad_silence if args.realtime else None,
        include_timestamps=args.json,
        api_key=args.api_key or os.environ.get("SPEECHWIRE_API_KEY"),
        cafile=_cafile(args.cafile),
        reconnect=_reconnect(),  # a cut resends the audio not yet committed
    )
    out = stdout_console()
    start = time.perf_counter()
    await _connecting(stt.connect(), args.url)
    chunk = 1600
    points = set() if args.realtime else _commit_points(pcm16k, 16000, chunk)
    ends = [(i + 1) * chunk / 16000 for i in sorted(points)] + [len(pcm16k) / 16000]
    committed = 0

    async def send() -> None:
        i = 0
        async for piece in paced_chunks(pcm16k, 16000, 100, realtime=args.realtime):
            await stt.send_audio(piece)
            if i in points:
                await stt.commit()
            i += 1
        await stt.finish()

    try:
        with Live(Text(""), console=out, transient=True, auto_refresh=False, redirect_stdout=False) as live:

            async def read() -> None:
                nonlocal committed
                async for event in stt.events():
                    at = time.perf_counter() - start
                    if not args.realtime and isinstance(event, CommittedTranscript):
                        at = ends[min(committed, len(ends) - 1)]  # where in the file it ends
                    if isinstance(event, CommittedTranscript):
                        committed += 1
                        if not event.text:
                            continue
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
            sender = asyncio.create_task(send())
            try:
                done, _ = await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()  # the first failure (server gone, commit unanswered) is raised
            finally:
                for task in (reader, sender):
                    task.cancel()
    finally:
        await stt.close()
    lat = stt.latency.end_of_speech_to_commit
    if lat and args.realtime and not args.json:
        console.print(f"end of speech → committed: {', '.join(f'{1000 * x:.0f} ms' for x in lat)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    cafile = _cafile(getattr(args, "cafile", None))
    if cafile is not None:
        # Every client a benchmark opens (websockets, httpx) builds its default TLS context from
        # the process's trust settings: one variable reaches them all.
        os.environ["SSL_CERT_FILE"] = cafile
    runs: dict[str, Callable[[], Any]] = {  # a benchmark's module is imported only when it runs
        "tts": lambda: _bench_module("tts").run_tts_bench,
        "barge-in": lambda: _bench_module("bargein").run_bargein_bench,
        "stt": lambda: _bench_module("stt").run_stt_bench,
        "load": lambda: _bench_module("load").run_load_bench,
        "soak": lambda: _bench_module("load").run_soak_bench,
        "browser": lambda: _bench_module("browser").run_browser_bench,
        "reconnect": lambda: _bench_module("reconnect").run_reconnect_bench,
        "tts-wer": lambda: _bench_module("tts_wer").run_tts_wer_bench,
        "failover": lambda: _bench_module("failover").run_failover_bench,
        "languages": lambda: _bench_module("languages").run_languages_bench,
    }
    result: int = runs[args.bench]()(args)
    return result


def _bench_module(name: str) -> Any:
    """``speechwire.bench.<name>``: some load engines or a browser, so only the one run is imported."""
    import importlib

    return importlib.import_module(f"speechwire.bench.{name}")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every option's help (but not None or False, which say nothing); descriptions
    keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechwire", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks of errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{serve,say,transcribe,bench}")

    def add(name: str, **kw: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], formatter_class=_HelpFormatter, **kw)  # type: ignore[arg-type]

    serve = add(
        "serve",
        help="run the server with local engines",
        description="Run the server. The keys it accepts: SPEECHWIRE_API_KEYS (a JSON list, e.g.\n"
        "'[\"sk-mine\"]'); clients send one as xi-api-key (say, transcribe: SPEECHWIRE_API_KEY).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--ssl-certfile", help="serve TLS (wss://, https://) with this certificate")
    serve.add_argument("--ssl-keyfile", help="the private key of --ssl-certfile")
    serve.add_argument("--engines", help="comma-separated TTS engines (default: piper,espeak)")
    serve.add_argument(
        "--dev",
        action="store_true",
        help=(
            "development: allow running without API keys, on a loopback address only (then "
            "everyone is admitted). With SPEECHWIRE_API_KEYS set it changes nothing: every caller "
            "needs a key or a single-use token, and the demo page gets tokens only with "
            "SPEECHWIRE_PAGE_TOKENS=true"
        ),
    )
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level"
    )
    serve.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="json: one object per line"
    )
    serve.set_defaults(func=_serve)

    say = add("say", help="speak text (arguments or stdin) into a WAV file through a server")
    say.add_argument("text", nargs="*", help="the text (default: read stdin)")
    say.add_argument("--out", "-o", default="say.wav")
    say.add_argument("--url", default=DEFAULT_URL, help="the server (ws://, wss://, http://, https://)")
    say.add_argument("--voice", default="joe")
    say.add_argument("--model")
    say.add_argument("--format", default="pcm_22050", help="output_format on the wire (decoded to WAV)")
    say.add_argument("--api-key", help=API_KEY_HELP)
    say.add_argument("--cafile", help=CAFILE_HELP)
    say.set_defaults(func=lambda a: asyncio.run(_say(a)))

    tr = add(
        "transcribe",
        help="transcribe an audio file (WAV/FLAC/MP3, any rate) through a server",
        description="Transcribe an audio file. It ends once the server has committed all of it\n"
        "(or says what is missing after 5 s + half the audio's length).",
    )
    tr.add_argument("file", help="an audio file (WAV, FLAC, MP3, Ogg; any rate, mixed to mono)")
    tr.add_argument(
        "--realtime",
        action="store_true",
        help="send at real-time pace, like a microphone, and let the server's VAD commit "
        "(default: as fast as possible, committed by the client; the same text)",
    )
    tr.add_argument("--json", action="store_true", help="one JSON object per event on stdout")
    tr.add_argument("--url", default=DEFAULT_URL, help="the server (ws://, wss://, http://, https://)")
    tr.add_argument("--model", default="scribe_v2_realtime", help="model_id")
    tr.add_argument(
        "--vad-silence",
        type=float,
        default=0.5,
        help="with --realtime: seconds of silence that commit (0.3-3). The server's own default "
        "is 1.5 s, as upstream; 0.5 commits each sentence soon after it ends",
    )
    tr.add_argument("--api-key", help=API_KEY_HELP)
    tr.add_argument("--cafile", help=CAFILE_HELP)
    tr.set_defaults(func=lambda a: asyncio.run(_transcribe(a)))

    bench = add("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)

    def bench_parser(name: str, **kw: str) -> argparse.ArgumentParser:
        """A benchmark's parser, with the option every benchmark has."""
        parser = bench_sub.add_parser(name, formatter_class=_HelpFormatter, **kw)  # type: ignore[arg-type]
        parser.add_argument("--json", help="also write the results to this JSON file")
        parser.set_defaults(func=_bench)
        return parser

    tts = bench_parser("tts", help="time to first audio and real-time factor of streaming TTS")
    tts.add_argument("--runs", type=int, default=30)
    tts.add_argument("--concurrency", default="1,4,8", help="session counts to measure")
    tts.add_argument("--format", default="pcm_22050")
    tts.add_argument("--voice", default="joe")
    tts.add_argument("--url", help="benchmark a running server instead of starting one")
    tts.add_argument("--cafile", help=CAFILE_HELP)
    tts.add_argument(
        "--relay", action="store_true", help="compare straight to an upstream server vs through a relay to it"
    )
    barge = bench_parser(
        "barge-in", help="interrupt → first audio of the new context, old reply fully sent and flushed"
    )
    barge.add_argument("--turns", type=int, default=30)
    barge.add_argument("--format", default="pcm_22050")
    barge.add_argument("--voice", default="joe")
    barge.add_argument("--seed", type=int, default=5)
    barge.add_argument("--url", help="benchmark a running server instead of starting one")
    barge.add_argument("--cafile", help=CAFILE_HELP)
    stt = bench_parser("stt", help="dev-set WER, end of speech to commit, partial cadence, capacity")
    stt.add_argument("--speech-dir", help="folder with manifest.tsv (default: ../shared/speech/dev)")
    stt.add_argument("--engine", default="moonshine", help="moonshine or whisper")
    stt.add_argument("--streams", default="1,2,4,6", help="concurrent real-time streams to try for capacity")
    stt.add_argument(
        "--parallel", type=int, default=4, help="dev-set files streamed at once for the WER pass"
    )
    stt.add_argument("--url")
    stt.add_argument("--cafile", help=CAFILE_HELP)
    stt.add_argument("--quick", action="store_true", help="4 files for WER and latency (for trying settings)")
    stt.add_argument(
        "--language-code",
        help="sent with every session (default: none, so the language is detected; en skips detection)",
    )
    load = bench_parser("load", help="how many TTS sessions and STT streams stay real-time")
    load.add_argument("--tts", default="1,2,4,6,8,12", help="concurrent TTS sessions to try")
    load.add_argument("--stt", default="2,4,6,8", help="concurrent STT streams to try")
    load.add_argument("--speech-dir")
    soak = bench_parser("soak", help="mixed sessions for a while: errors and memory growth")
    soak.add_argument("--minutes", type=float, default=10.0)
    web = bench_parser(
        "browser", help="the demo page in Chromium: PCM vs WebM capture latency, playback latency"
    )
    web.add_argument("--files", type=int, default=5, help="dev recordings per capture mode")
    web.add_argument("--runs", type=int, default=20, help="typed replies played")
    web.add_argument("--speech-dir")
    web.add_argument("--url", help="a running server's http URL instead of starting one")
    web.add_argument("--screenshots", help="folder for a screenshot of the page in use")
    rec = bench_parser(
        "reconnect", help="resumable TTS client: loss → next open connection, network cut and server kill"
    )
    rec.add_argument("--cuts", type=int, default=30, help="network cuts through a loopback proxy")
    rec.add_argument("--restarts", type=int, default=10, help="server kills (SIGKILL) and restarts")
    bench_parser("tts-wer", help="WER of synthesised speech (streamed and whole), by Whisper")
    fail = bench_parser(
        "failover", help="HAProxy + replicas + Redis: SIGKILL a replica, time to resumed audio and transcript"
    )
    fail.add_argument(
        "--kills", type=int, default=20, help="replicas killed (SIGKILL), one per round (0: none)"
    )
    fail.add_argument("--replicas", type=int, default=2, help="replicas behind HAProxy")
    fail.add_argument("--budget-s", type=float, default=240.0, help="stop starting rounds after this long")
    fail.add_argument("--speech-dir")
    fail.add_argument(
        "--capacity",
        action="store_true",
        help="also measure real-time TTS sessions through HAProxy for each of --capacity-replicas",
    )
    fail.add_argument("--levels", default="4,8,12,16,20,24", help="TTS session counts tried for --capacity")
    fail.add_argument("--capacity-replicas", default="1,2,3", help="replica counts measured for --capacity")
    langs = bench_parser(
        "languages",
        help="per-language WER and language detection of the multilingual engines (espeak-ng speech)",
    )
    langs.add_argument("--languages", default="all", help="ISO 639-1 codes to score, comma-separated")
    langs.add_argument("--engines", default="whisper_base", help="multilingual engines to score")
    langs.add_argument("--sentences", type=int, default=3, help="sentences per language (at most 3)")
    langs.add_argument(
        "--threads", type=int, default=min(2, os.cpu_count() or 1), help="cpu_threads per engine"
    )
    langs.add_argument("--server", help="also stream each sentence to this running server with language_code")
    langs.add_argument("--show", action="store_true", help="print what each engine heard")
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Options declared without help still show their default (argparse prints nothing for them)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _show_defaults(child)
        elif action.help is None and action.default not in (None, False, argparse.SUPPRESS):
            action.help = "(default: %(default)s)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; a failure is one line on stderr (and its traceback with --verbose)."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.verbose:
            console.print_exception()
        from rich.text import Text

        line = " ".join(explain(exc, getattr(args, "url", None)).split())  # one line, always
        console.print(Text.assemble(("error: ", "red"), line), soft_wrap=True)
        return exc.code if isinstance(exc, CLIError) else 1
    return result


if __name__ == "__main__":
    raise SystemExit(main())

"""Drive the demo page in real Chromium: fake microphone from a WAV, speak, read the page's figures.

Shared by the browser tests and ``speechwire bench browser``. Playwright is a test dependency
and is imported only here; Chromium is Debian's (``/usr/bin/chromium``), never a downloaded one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from speechwire.audio.resample import resample
from speechwire.audio.wav import read_audio_file, write_wav

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Playwright

CHROMIUM = "/usr/bin/chromium"


def chromium_args(fake_mic: Path | None = None) -> list[str]:
    args = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-gpu",
        "--disable-quic",
    ]
    if fake_mic is not None:
        # %noloop: play once; after the file the fake device plays a tone, so the file is padded.
        args.append(f"--use-file-for-fake-audio-capture={fake_mic.resolve()}%noloop")
    return args


async def launch(playwright: Playwright, fake_mic: Path | None = None) -> Browser:
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args(fake_mic))


async def open_demo(browser: Browser, base_url: str, **page_options: Any) -> Page:
    """A new page on the demo with its tap on (``?tap=1``), once its TTS socket is open."""
    page = await browser.new_page(**page_options)
    await page.goto(f"{base_url}/?tap=1")
    await page.wait_for_function("() => window.speechwireDemo?.tts.state === 'open'")
    return page


def padded_wav(source: Path, target: Path, lead_s: float = 0.5, tail_s: float = 4.0) -> float:
    """``source`` with silence around it (the fake mic's tone after the file must never be heard),
    at 48 kHz mono; returns the speech's duration in seconds."""
    pcm, rate = read_audio_file(source)
    pcm48 = resample(pcm, rate, 48000)
    silence = np.zeros(int(48000 * lead_s), np.int16), np.zeros(int(48000 * tail_s), np.int16)
    write_wav(target, np.concatenate([silence[0], pcm48, silence[1]]), 48000)
    return len(pcm) / rate


@dataclass
class PageTranscript:
    text: str
    lines: list[dict[str, Any]]
    eos_to_final_ms: list[float]
    errors: list[Any] = field(default_factory=list)


async def transcribe_in_page(
    page: Page,
    speech_s: float,
    mode: str = "pcm",
    settle_s: float = 6.0,
    midway: Callable[[Page], Awaitable[None]] | None = None,
) -> PageTranscript:
    """Start the page's microphone (fed by the fake-mic WAV), wait for the speech and its final
    text, stop, and return what the page committed. ``midway`` runs 70 % into the speech."""
    await page.select_option("#mic-mode", mode)
    await page.click("#mic-start")
    await page.wait_for_function(
        "() => window.speechwireDemo.transcriber && window.speechwireDemo.transcriber.state === 'open'"
    )
    # The file plays from when the device opens; wait for all of it, then for the final commit.
    if midway is not None:
        await asyncio.sleep(speech_s * 0.7)
        started = time.monotonic()
        await midway(page)
        await asyncio.sleep(max(0.0, speech_s * 0.3 + 0.5 - (time.monotonic() - started)))
    else:
        await asyncio.sleep(speech_s + 0.5)
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        partial = await page.evaluate("window.speechwireDemo.transcriber.partial")
        if not partial:
            break
        await asyncio.sleep(0.1)
    await page.click("#mic-stop")
    await page.wait_for_function("() => !document.querySelector('#mic-start').disabled", timeout=10_000)
    data = await page.evaluate(
        """() => {
        const d = window.speechwireDemo;
        return { text: d.view.text(), errors: d.errors,
                 lines: d.transcriber.lines.map(l => ({text: l.text, startS: l.startS, endS: l.endS,
                                                       latencyMs: l.latencyMs})) };
    }"""
    )
    latencies = [line["latencyMs"] for line in data["lines"] if line["latencyMs"] is not None]
    return PageTranscript(data["text"], data["lines"], latencies, data["errors"])


@dataclass
class PagePlayback:
    stats: dict[str, Any]
    sent: npt.NDArray[np.float32]
    played: npt.NDArray[np.float32]
    latency: dict[str, Any]
    errors: list[Any]


async def speak_in_page(page: Page, text: str, timeout_s: float = 30.0) -> PagePlayback:
    """Type ``text``, press Speak, wait until it has been played out; the page must run with
    ``?tap=1`` so it keeps what the server sent and what the player output."""
    await page.fill("#tts-text", text)
    before = await page.evaluate("window.speechwireDemo.player.stats.playedMs")
    await page.evaluate("window.speechwireDemo.tts.received = []")
    await page.evaluate("window.speechwireDemo.player.takeTap()")  # start the tap afresh
    done = page.evaluate(
        "new Promise(r => window.speechwireDemo.tts.addEventListener('done', r, {once: true}))"
    )
    await page.click("#speak-button")
    await asyncio.wait_for(done, timeout_s)
    await page.wait_for_function(
        f"""() => {{ const s = window.speechwireDemo.player.stats;
                  return !s.playing && s.queuedMs === 0 && s.playedMs > {before}; }}""",
        timeout=timeout_s * 1000,
    )
    await asyncio.sleep(0.1)
    data = await page.evaluate(
        """async () => {
        const d = window.speechwireDemo;
        const played = await d.player.takeTap();
        const total = d.tts.received.reduce((n, a) => n + a.length, 0);
        const sent = new Int16Array(total);
        let o = 0;
        for (const a of d.tts.received) { sent.set(a, o); o += a.length; }
        return { stats: d.player.stats, latency: d.panel.summary(), errors: d.errors,
                 sent: Array.from(sent), played: Array.from(played) };
    }"""
    )
    sent = np.asarray(data["sent"], dtype=np.float32) / 32768.0
    played = np.asarray(data["played"], dtype=np.float32)
    return PagePlayback(data["stats"], sent, played, data["latency"], data["errors"])


@dataclass(frozen=True)
class Match:
    lag: int
    """Samples of ``played`` before the first sample of ``sent``."""
    window_r: list[float]
    """Pearson r of each 50 ms window that holds speech, after alignment."""
    covered: float
    """Fraction of ``sent`` found in ``played`` after alignment."""


def correlate(sent: npt.NDArray[np.float32], played: npt.NDArray[np.float32], rate: int) -> Match:
    """Align ``played`` to ``sent`` by FFT cross-correlation, then correlate window by window."""
    n = len(sent) + len(played)
    size = 1 << (n - 1).bit_length()
    spectrum = np.fft.rfft(played, size) * np.conj(np.fft.rfft(sent, size))
    xcorr = np.fft.irfft(spectrum, size)
    lag = int(np.argmax(xcorr[: len(played)]))
    aligned = played[lag : lag + len(sent)]
    covered = len(aligned) / max(1, len(sent))
    window = rate // 20
    rs: list[float] = []
    for start in range(0, len(aligned) - window + 1, window):
        a = sent[start : start + window]
        b = aligned[start : start + window]
        if np.sqrt(np.mean(a**2)) < 0.01:  # silence: correlation means nothing there
            continue
        rs.append(float(np.corrcoef(a, b)[0, 1]))
    return Match(lag, rs, covered)


# --- speechwire bench browser -------------------------------------------------------------------

BENCH_FILES = (
    "ls_1089-134686-0000.wav",
    "lj_LJ001-0001.wav",
    "jfk.wav",
    "librivox_0870.wav",
    "ls_1221-135766-0001.wav",
)
BENCH_TEXTS = (
    "Hello! How can I help you today?",
    "The weather will be sunny this afternoon, with a light breeze from the west.",
    "Sure, I have set a timer for ten minutes.",
    "Your next meeting is at three o'clock in the small conference room.",
    "Here is a short summary of what we discussed this morning.",
)


@dataclass
class BrowserReport:
    capture: dict[str, dict[str, Any]] = field(default_factory=dict)
    playback: dict[str, Any] = field(default_factory=dict)


def _summary(values: list[float]) -> dict[str, Any]:
    from speechwire.bench.harness import spread

    p50, p95, _ = spread(values)
    return {
        "n": len(values),
        "p50": round(p50, 1) if values else None,
        "p95": round(p95, 1) if values else None,
    }


async def browser_bench(
    base_url: str, speech_dir: Path, work: Path, files: int, runs: int, screenshots: Path | None
) -> BrowserReport:
    """Each capture mode over ``files`` dev recordings (a browser per file: the fake mic is a launch
    flag), then ``runs`` typed replies played in one page."""
    from playwright.async_api import async_playwright

    from speechwire.bench.stt import load_manifest
    from speechwire.bench.wer import corpus_wer

    manifest = {path.name: (path, text) for path, text, _ in load_manifest(speech_dir)}
    # The five below first, then the rest of the set (except the noisy copies and the long ones).
    rest = [n for n in manifest if n not in BENCH_FILES and "noisy" not in n and "long" not in n]
    names = [*BENCH_FILES, *sorted(rest)][:files]
    report = BrowserReport()
    async with async_playwright() as playwright:
        for mode in ("pcm", "webm"):
            latencies: list[float] = []
            pairs: list[tuple[str, str]] = []
            for name in names:
                path, reference = manifest[name]
                wav = work / f"{mode}-{name}"
                speech_s = padded_wav(path, wav)
                browser = await launch(playwright, wav)
                page = await open_demo(browser, base_url, viewport={"width": 1100, "height": 900})
                shoot = screenshots is not None and mode == "pcm" and name == names[0]

                async def live(page: Page) -> None:
                    assert screenshots is not None
                    await page.fill("#tts-text", BENCH_TEXTS[1])
                    await page.click("#speak-button")
                    await asyncio.sleep(0.6)
                    await page.screenshot(path=str(screenshots / "demo-live.png"), full_page=True)

                result = await transcribe_in_page(
                    page, speech_s + 0.5, mode=mode, midway=live if shoot else None
                )
                latencies += result.eos_to_final_ms
                pairs.append((reference, result.text))
                if shoot:
                    assert screenshots is not None
                    await page.screenshot(path=str(screenshots / "demo-after.png"), full_page=True)
                await browser.close()
            report.capture[mode] = {
                "end_of_speech_to_final_ms": _summary(latencies),
                "wer": round(corpus_wer(pairs).rate, 4),
                "files": len(pairs),
            }
        browser = await launch(playwright)
        page = await open_demo(browser, base_url)
        await speak_in_page(page, "Warming up.")
        underruns = 0
        for i in range(runs):
            playback = await speak_in_page(page, BENCH_TEXTS[i % len(BENCH_TEXTS)])
            underruns = playback.stats["underruns"]
        summary = await page.evaluate("window.speechwireDemo.panel.summary()")
        await browser.close()
    for name in ("time_to_first_audio", "time_to_first_sound", "round_trip"):
        values = summary.get(name, {})
        report.playback[name] = {k: values.get(k) for k in ("n", "p50", "p95")}
    report.playback["underruns"] = underruns
    report.playback["replies"] = runs
    return report


def run_browser_bench(args: Any) -> int:
    """``speechwire bench browser``: capture modes (PCM worklet vs MediaRecorder WebM/Opus) and
    playback in the demo page, against a server started as its own process."""
    import contextlib
    import tempfile

    from speechwire.bench.harness import full_server, table, write_json
    from speechwire.bench.stt import default_speech_dir
    from speechwire.consoles import stdout_console

    console = stdout_console()
    if not Path(CHROMIUM).exists():
        console.print("[red]needs Debian's chromium: apt-get install chromium[/red]")
        return 2
    screenshots = Path(args.screenshots) if args.screenshots else None
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    speech_dir = Path(args.speech_dir) if args.speech_dir else default_speech_dir()
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            server = stack.enter_context(full_server())
            url = f"http://127.0.0.1:{server.port}"
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        with console.status("driving Chromium…"):
            report = asyncio.run(browser_bench(url, speech_dir, work, args.files, args.runs, screenshots))
    rows = []
    for mode, row in report.capture.items():
        lat = row["end_of_speech_to_final_ms"]
        rows.append((mode, row["files"], f"{row['wer']:.1%}", lat["p50"], lat["p95"]))
    title = "Browser: end of speech → final text (page clock)"
    console.print(table(title, ("capture", "files", "WER", "p50 ms", "p95 ms"), rows))
    figures = ("time_to_first_audio", "time_to_first_sound", "round_trip")
    play = [(name, *(f"{report.playback[name][q]:.1f}" for q in ("p50", "p95"))) for name in figures]
    play.append(("underruns", str(report.playback["underruns"]), ""))
    title = f"Browser: typed reply → audio ({report.playback['replies']} replies)"
    console.print(table(title, ("figure", "p50 ms", "p95 ms"), play))
    write_json(args.json, asdict(report))
    return 0

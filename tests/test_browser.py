"""The browser parts in real Chromium (Debian's), driven by Playwright, against the real server.

The fake microphone plays a dev-set recording; the player's output is tapped inside its
AudioWorklet. Nothing is mocked: the page mints its own single-use tokens from the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("playwright")
from playwright.async_api import Page, async_playwright

from speechwire.bench.browser import (
    CHROMIUM,
    correlate,
    launch,
    padded_wav,
    speak_in_page,
    transcribe_in_page,
)
from speechwire.bench.wer import wer
from speechwire.server.ops.runner import RunningServer
from speechwire.testing.serverprocess import ServerProcess, free_port
from tests.conftest import speech_manifest

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="make test installs Debian's chromium")

TEXT = "The quick brown fox jumps over the lazy dog. Then it ran into the woods, far from the farm."


def reference(name: str) -> str:
    return next(u.transcript for u in speech_manifest() if u.path.name == name)


@asynccontextmanager
async def open_page(server_url: str, fake_mic: Path | None = None) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await launch(playwright, fake_mic)
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{server_url}/?tap=1")
        await page.wait_for_function(
            "() => window.speechwireDemo && window.speechwireDemo.tts.state === 'open'"
        )
        try:
            yield page
        finally:
            await browser.close()
        assert errors == [], errors


@pytest.mark.parametrize(
    ("mode", "name"), [("pcm", "ls_1089-134686-0000.wav"), ("webm", "lj_LJ001-0001.wav")]
)
async def test_fake_mic_transcript_matches_the_reference(
    server: RunningServer, tmp_path: Path, mode: str, name: str
) -> None:
    from tests.conftest import SPEECH_DIR

    wav = tmp_path / "mic.wav"
    speech_s = padded_wav(SPEECH_DIR / name, wav)
    async with open_page(server.http_url, wav) as page:
        result = await transcribe_in_page(page, speech_s + 0.5, mode=mode)
        assert result.errors == []
        score = wer(reference(name), result.text)
        print(f"\n{mode}: WER {score.rate:.1%}  {result.text!r}  eos→final {result.eos_to_final_ms}")
        assert score.rate <= 0.15, (result.text, reference(name))
        # Committed lines carry times, within the file's span, and the end-of-speech latency.
        assert result.lines and all(line["startS"] is not None for line in result.lines)
        assert all(0 <= line["startS"] <= line["endS"] <= speech_s + 2.0 for line in result.lines)
        assert result.eos_to_final_ms and all(0 < ms < 5000 for ms in result.eos_to_final_ms)
        # The transcript view shows committed lines and no leftover interim text.
        assert await page.locator(".sw-committed").count() == len(result.lines)
        assert await page.locator(".sw-interim").inner_text() == ""


async def test_typed_text_is_heard_without_underruns(server: RunningServer) -> None:
    async with open_page(server.http_url) as page:
        playback = await speak_in_page(page, TEXT)
        assert playback.errors == []
        stats = playback.stats
        assert stats["underruns"] == 0 and stats["overruns"] == 0, stats
        rate = 22050
        assert len(playback.sent) > rate * 2  # a few seconds of speech arrived
        # Everything sent was played: the player's count and the tap agree with the server's audio.
        assert abs(stats["playedMs"] / 1000 - len(playback.sent) / rate) < 0.05
        match = correlate(playback.sent, playback.played, rate)
        assert match.covered > 0.99
        assert len(match.window_r) > 20 and min(match.window_r) > 0.99, match.window_r
        assert playback.latency["time_to_first_audio"]["n"] == 1


async def test_interrupt_fades_out_and_drops_the_rest(server: RunningServer) -> None:
    long_text = " ".join([TEXT] * 4)
    async with open_page(server.http_url) as page:
        await page.fill("#tts-text", long_text)
        await page.evaluate("window.speechwireDemo.player.takeTap()")
        await page.click("#speak-button")
        await page.wait_for_function("() => window.speechwireDemo.player.stats.playedMs > 1200")
        await page.click("#interrupt-button")
        await page.wait_for_function("() => window.speechwireDemo.player.stats.queuedMs === 0")
        await asyncio.sleep(1.0)  # anything of the old context arriving now must not play
        data = await page.evaluate(
            """async () => { const d = window.speechwireDemo; const tap = await d.player.takeTap();
            return { stats: d.player.stats, late: d.tts.lateChunks, tap: Array.from(tap) }; }"""
        )
        played = np.asarray(data["tap"], dtype=np.float32)
        rate = 22050
        last = int(np.flatnonzero(played)[-1])
        # After the fade: exact silence for the rest of the wait (the long reply was dropped).
        assert len(played) - last > 0.8 * rate
        assert data["stats"]["playedMs"] < 1200 + 500
        # The fade: the last 25 ms get quieter towards the end instead of stopping on a sample.
        fade = np.abs(played[last - int(0.025 * rate) : last + 1])
        quarter = len(fade) // 4
        assert fade[-quarter:].max() <= max(fade[:quarter].max(), 1e-3) / 2
        # And the next reply plays normally.
        playback = await speak_in_page(page, "Sorry, go ahead.")
        assert len(playback.sent) > 0 and playback.stats["underruns"] == 0


async def test_status_reconnects_after_a_server_restart_without_reload() -> None:
    port = free_port()
    process = ServerProcess(port, SPEECHWIRE_TTS_ENGINES='["piper"]')
    process.start()
    try:
        async with open_page(f"http://127.0.0.1:{port}") as page:
            await page.evaluate("window.notReloaded = true")
            first = await speak_in_page(page, "Before the restart.")
            assert len(first.sent) > 0
            process.kill()
            # Full jitter: a wait can be near 0 ms, so the countdown is caught while it shows rather
            # than read once after the state changed (it may already say "connecting" again).
            await page.wait_for_function(
                """() => { const s = document.querySelector('#tts-status');
                           return s.dataset.state === 'reconnecting'
                                  && s.textContent.includes('reconnecting in')
                                  && s.textContent.includes('attempt'); }""",
                timeout=20_000,
            )
            process.start()
            await page.wait_for_function(
                "() => document.querySelector('#tts-status').dataset.state === 'open'", timeout=30_000
            )
            assert await page.evaluate("window.notReloaded === true")
            after = await speak_in_page(page, "After the restart, this still works.")
            assert len(after.sent) > 22050 and after.stats["underruns"] == 0
            history = await page.evaluate("window.speechwireDemo.ttsStatus.history")
            assert history[:3] == ["idle", "connecting", "open"]
            assert "reconnecting" in history and history[-1] == "open"
    finally:
        process.kill()


async def test_page_never_sees_a_key_and_tokens_are_single_use(server: RunningServer) -> None:
    import httpx
    import websockets

    async with httpx.AsyncClient(base_url=server.http_url) as http:
        page = (await http.get("/")).text
        assert "api_key" not in page.lower() and "xi-api-key" not in page.lower()
        token = (await http.post("/v1/single-use-token/realtime_scribe")).json()["token"]
        assert (await http.post("/v1/single-use-token/nonsense")).status_code == 422
    url = f"{server.ws_url}/v1/speech-to-text/realtime?token={token}"
    async with websockets.connect(url) as ws:
        started = await ws.recv()
        assert "session_started" in str(started)
    async with websockets.connect(url) as ws:
        message = await ws.recv()
        assert '"auth_error"' in str(message)
        await ws.wait_closed()
        assert ws.close_code == 1008


async def test_a_session_time_limit_reconnects_instead_of_failing() -> None:
    from speechwire.config import Settings
    from speechwire.server.ops.runner import start_server

    running = start_server(
        Settings(dev=True, tts_engines=["piper"], stt_engines=["moonshine"], max_session_s=2)
    )
    try:
        async with open_page(running.http_url) as page:
            await page.wait_for_function(
                "() => window.speechwireDemo.ttsStatus.history.filter(s => s === 'open').length >= 2",
                timeout=15_000,
            )
            history = await page.evaluate("window.speechwireDemo.ttsStatus.history")
            assert "failed" not in history and "reconnecting" in history
            playback = await speak_in_page(page, "Still talking after a new session.")
            assert len(playback.sent) > 0
    finally:
        running.stop()


async def test_voice_list_is_grouped_by_language_and_a_french_voice_speaks(server: RunningServer) -> None:
    """~130 voices in 93 languages: the console groups them (English first) and switching to a
    French voice reconnects and speaks with it."""
    async with open_page(server.http_url) as page:
        groups = await page.evaluate(
            """() => [...document.querySelectorAll('#voice optgroup')].map(
                 g => [g.label, [...g.querySelectorAll('option')].map(o => o.value)])"""
        )
        labels = [label for label, _ in groups]
        assert labels[0] == "English" and "joe" in groups[0][1], groups[:2]
        assert len(set(labels)) == len(labels) > 50 and not any(len(x) < 3 for x in labels), labels
        assert "espeak-fr" in dict(groups)["French"]
        await page.select_option("#voice", "espeak-fr")
        await page.wait_for_function(
            "() => { const t = window.speechwireDemo.tts;"
            " return t.voiceId === 'espeak-fr' && t.state === 'open'; }"
        )
        playback = await speak_in_page(page, "Bonjour, comment allez-vous aujourd'hui ?")
        assert playback.errors == [] and len(playback.sent) > 22050 // 2

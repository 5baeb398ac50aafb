"""Secrets and errors (issue 14): each finding of the attack run, reproduced on loopback against
the real server with bounded counts, and what must happen instead.

Servers are real (uvicorn on 127.0.0.1, espeak), clients are real (websockets, httpx, Chromium).
DNS rebinding is reproduced as the browser would do it: the connection goes to 127.0.0.1, the
``Host`` and ``Origin`` name the attacker's domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import websockets

from speechwire.bench.browser import CHROMIUM, launch, padded_wav
from speechwire.config import Settings
from speechwire.server.ops.runner import RunningServer, start_server

if TYPE_CHECKING:
    from playwright.async_api import Page

KEY = "sw_" + secrets.token_urlsafe(24)  # 35 characters: long enough to be elided in frame dumps
ORIGIN = "https://app.example"
TTS = "/v1/text-to-speech/espeak-en/stream-input"
MINT = "/v1/single-use-token/tts_websocket"
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets", "speechwire", "httpx")


def _start(**values: object) -> RunningServer:
    return start_server(Settings(tts_engines=["espeak"], stt_engines=[], **values))  # type: ignore[arg-type]


KEYED: dict[str, Any] = {
    "api_keys": [KEY],
    "page_tokens": True,
    "allowed_origins": [ORIGIN],
    "rate_burst": 3,
    "rate_sessions_per_minute": 6,
}
"""Keys, page tokens for one origin, and a small budget (bursts of 3) so limits show quickly."""


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    """Keys, page tokens for one origin, and a small budget (bursts of 3) so limits show quickly."""
    running = _start(**KEYED)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dev() -> Iterator[RunningServer]:
    running = _start(dev=True)
    yield running
    running.stop()


class Captured(logging.Handler):
    """Every record of every logger, formatted as ``speechwire serve`` formats it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def debug_logs(keyed: RunningServer) -> Iterator[Captured]:
    """``--log-level debug`` for the length of one test: websockets' frame and header dumps on.
    After the server started, since uvicorn's start-up sets its loggers' levels."""
    handler = Captured()
    root = logging.getLogger()
    saved = root.level, {n: (logging.getLogger(n).level, logging.getLogger(n).propagate) for n in LOGGERS}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).propagate = True
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, (level, propagate) in saved[1].items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate


def pieces(secret: str, size: int = 8) -> list[str]:
    """Every run of ``size`` characters of ``secret``: no part of it may be logged."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def leaked(secret: str, text: str) -> list[str]:
    return [piece for piece in pieces(secret) if piece in text]


async def _refusal(url: str, first: str, **connect: object) -> tuple[dict[str, object], int | None]:
    async with websockets.connect(url, **connect) as ws:  # type: ignore[arg-type]
        with contextlib.suppress(websockets.ConnectionClosed):  # refused before it was read
            await ws.send(first)
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.wait_closed()
        return frame, ws.close_code


# --- no part of a key or token in any log line ---------------------------------------------------


async def test_debug_frame_dumps_show_no_part_of_the_key(keyed: RunningServer, debug_logs: Captured) -> None:
    """The SDK's first message puts the key last; websockets elides a long frame to head + tail,
    which left the key's last 20 characters in the log without the name redaction looks for."""
    first = json.dumps(
        {
            "text": " ",
            "voice_settings": {"stability": 0.5, "similarity_boost": 0.8, "speed": 1.0},
            "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]},
            "xi_api_key": KEY,
        }
    )
    async with websockets.connect(keyed.ws_url + TTS) as ws:
        await ws.send(first)
        await ws.send(json.dumps({"text": "Hello there. ", "flush": True}))
        assert "audio" in json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(json.dumps({"text": ""}))
        async for _ in ws:
            pass
    assert any("< TEXT " in line for line in debug_logs.lines), "frame dumps were logged"
    assert leaked(KEY, debug_logs.text) == []


async def test_a_percent_encoded_token_and_a_bearer_header_are_blanked(
    keyed: RunningServer, debug_logs: Captured
) -> None:
    """``?%74oken=`` is ``token=`` to the server, so it is to redaction too; ``Authorization:
    Bearer X`` is blanked whole (it was logged as ``*** X``)."""
    async with httpx.AsyncClient(base_url=keyed.http_url, headers={"xi-api-key": KEY}) as http:
        token = (await http.post(MINT)).json()["token"]
    async with websockets.connect(f"{keyed.ws_url}{TTS}?%74oken={token}") as ws:
        await ws.send(json.dumps({"text": " "}))
        await ws.send(json.dumps({"text": "Hi. ", "flush": True}))
        assert "audio" in json.loads(await asyncio.wait_for(ws.recv(), 10))  # accepted as token=
    wrong = "sw_" + secrets.token_urlsafe(24)  # a client's key the server does not know
    frame, code = await _refusal(
        keyed.ws_url + TTS, json.dumps({"text": " "}), additional_headers={"authorization": f"Bearer {wrong}"}
    )
    assert frame["error"] == "invalid_api_key" and code == 1008
    assert leaked(token, debug_logs.text) == [] and leaked(wrong, debug_logs.text) == []
    assert any("%74oken=***" in line for line in debug_logs.lines), "the URL was logged"
    assert any("authorization: ***" in line.lower() for line in debug_logs.lines), "headers were logged"


# --- a lone surrogate in the key ------------------------------------------------------------------


async def test_a_lone_surrogate_key_is_an_invalid_key_not_a_crash(
    keyed: RunningServer, debug_logs: Captured
) -> None:
    r"""``"\ud800abc"`` is valid JSON but no UTF-8: the key check raised UnicodeEncodeError (a
    traceback at ERROR, and a 1006 drop)."""
    for _ in range(3):
        frame, code = await _refusal(keyed.ws_url + TTS, r'{"text": " ", "xi_api_key": "\ud800abc"}')
        assert frame["error"] == "invalid_api_key" and code == 1008, frame
    assert not [line for line in debug_logs.lines if line.startswith("ERROR")]
    assert "Traceback" not in debug_logs.text and "UnicodeEncodeError" not in debug_logs.text


# --- DNS rebinding: the Host is checked ------------------------------------------------------------


async def test_a_rebinding_page_cannot_open_sessions_on_a_dev_server(dev: RunningServer) -> None:
    """``attacker.example`` now resolves to 127.0.0.1: the browser connects here with Host and
    Origin both the attacker's, which the Origin check alone took for the server's own page."""
    evil = "attacker.example"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            f"ws://{evil}:{dev.port}{TTS}", host="127.0.0.1", origin=f"http://{evil}:{dev.port}"
        )
    assert refused.value.response.status_code == 400
    assert b"host_not_allowed" in refused.value.response.body
    async with httpx.AsyncClient(base_url=dev.http_url) as http:
        for path in ("/v1/voices", "/"):
            response = await http.get(path, headers={"host": f"{evil}:{dev.port}"})
            assert response.status_code == 400 and response.json()["detail"]["status"] == "host_not_allowed"
        # Every address the server is reached by on this machine still works.
        for host in (f"127.0.0.1:{dev.port}", f"localhost:{dev.port}", "[::1]", "LOCALHOST."):
            assert (await http.get("/v1/voices", headers={"host": host})).status_code == 200, host
    for host in ("127.0.0.1", "localhost"):
        async with websockets.connect(
            f"ws://{host}:{dev.port}{TTS}", host="127.0.0.1", origin=f"http://{host}:{dev.port}"
        ) as ws:
            await ws.send(json.dumps({"text": "Hi. ", "flush": True}))
            assert "audio" in json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_a_rebinding_page_cannot_mint_page_tokens(keyed: RunningServer) -> None:
    """A keyed server with page tokens and no ``allowed_hosts``: the page at the rebinding name
    is not the server's own page, so its Origin is refused; programs (with a key) may use any
    name, and the page on an allowed origin still gets its token."""
    evil = f"rebind.example:{keyed.port}"
    async with httpx.AsyncClient(base_url=keyed.http_url) as http:
        minted = await http.post(MINT, headers={"host": evil, "origin": f"http://{evil}"})
        assert minted.status_code == 403, minted.text
        assert minted.json()["detail"]["status"] == "origin_not_allowed"
        assert (await http.post(MINT, headers={"origin": ORIGIN})).status_code == 200
        by_name = await http.get("/v1/voices", headers={"host": "speech.example", "xi-api-key": KEY})
        assert by_name.status_code == 200
    frame, code = await _refusal(
        f"ws://{evil}{TTS}",
        json.dumps({"text": " ", "xi_api_key": KEY}),
        host="127.0.0.1",
        origin=f"http://{evil}",
    )
    assert frame["error"] == "origin_not_allowed" and code == 1008


async def test_names_in_allowed_hosts_are_served() -> None:
    running = _start(api_keys=[KEY], allowed_hosts=["speech.example", "*.example.org"])
    try:
        async with httpx.AsyncClient(base_url=running.http_url, headers={"xi-api-key": KEY}) as http:
            for host, status in (
                ("speech.example", 200),
                ("eu.example.org:443", 200),
                ("example.org", 400),
                ("speech.example.evil", 400),
            ):
                assert (await http.get("/v1/voices", headers={"host": host})).status_code == status, host
        async with websockets.connect(
            f"ws://speech.example:{running.port}{TTS}",
            host="127.0.0.1",
            additional_headers={"xi-api-key": KEY},
        ) as ws:
            await ws.send(json.dumps({"text": "Hi. ", "flush": True}))
            assert "audio" in json.loads(await asyncio.wait_for(ws.recv(), 10))
    finally:
        running.stop()


# --- X-Forwarded-For is believed only from configured proxies ---------------------------------------


async def _mints(server: RunningServer, forwarded: list[str | None]) -> list[int]:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        statuses = []
        for address in forwarded:
            headers = {"origin": ORIGIN} | ({"x-forwarded-for": address} if address else {})
            statuses.append((await http.post(MINT, headers=headers)).status_code)
        return statuses


async def test_a_spoofed_forwarded_for_does_not_reset_the_page_token_budget(keyed: RunningServer) -> None:
    """Plain mints hit 429 after the burst; the attack then wrote a fresh X-Forwarded-For per
    request and every mint passed (uvicorn believes any loopback peer's)."""
    plain = await _mints(keyed, [None] * 5)
    assert plain.count(429) >= 2, plain
    spoofed = await _mints(keyed, [f"198.51.100.{i}" for i in range(10)])
    assert spoofed.count(429) >= 6, spoofed  # one shared budget of 3 for all of them


async def test_a_configured_proxy_is_believed() -> None:
    running = _start(
        **KEYED,
        trusted_proxies=["127.0.0.1"],
    )
    try:
        distinct = await _mints(running, [f"203.0.113.{i}" for i in range(8)])
        assert distinct == [200] * 8  # eight clients behind the proxy, each its own budget
        same = await _mints(running, ["203.0.113.99"] * 6)
        assert same.count(429) >= 2, same  # one client behind it still has one
    finally:
        running.stop()


# --- the API description is not public; the page sets its security headers -------------------------


async def test_api_docs_only_on_a_dev_server(keyed: RunningServer, dev: RunningServer) -> None:
    paths = ("/openapi.json", "/docs", "/redoc")
    async with httpx.AsyncClient(base_url=keyed.http_url, headers={"xi-api-key": KEY}) as http:
        assert [(await http.get(p)).status_code for p in paths] == [404, 404, 404]
    async with httpx.AsyncClient(base_url=dev.http_url) as http:
        assert [(await http.get(p)).status_code for p in paths] == [200, 200, 200]


async def test_the_page_and_every_response_carry_security_headers(keyed: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=keyed.http_url) as http:
        page = await http.get("/")
        policy = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert page.headers["x-frame-options"] == "DENY"
        for response in (page, await http.get("/web/player-worklet.js"), await http.get("/v1/voices")):
            assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert "javascript" in (await http.get("/web/capture-worklet.js")).headers["content-type"]


async def _until(page: Page, expression: str, timeout_s: float) -> None:
    """Poll ``expression`` from outside the page. Playwright's ``wait_for_function`` evaluates its
    predicate with ``eval`` inside the page, which the page's own policy (rightly) refuses."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await page.evaluate(expression):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {expression}"
        await asyncio.sleep(0.1)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="make test installs Debian's chromium")
async def test_the_page_runs_under_its_policy_in_chromium(tmp_path: Path) -> None:
    """The policy must not break the page: Chromium loads it, reports no CSP violation, the
    player's AudioWorklet plays speech and the capture AudioWorklet sends the fake microphone's
    speech, which comes back as text."""
    pytest.importorskip("playwright")
    from playwright.async_api import async_playwright

    from tests.conftest import SPEECH_DIR

    running = start_server(Settings(dev=True, tts_engines=["espeak"], stt_engines=["moonshine"]))
    wav = tmp_path / "mic.wav"
    speech_s = padded_wav(SPEECH_DIR / "lj_LJ001-0008.wav", wav, tail_s=2.0)
    demo = "window.speechwireDemo"
    try:
        async with async_playwright() as playwright:
            browser = await launch(playwright, wav)
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
            )
            await page.add_init_script(
                "window.cspViolations = [];"
                "document.addEventListener('securitypolicyviolation',"
                " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            response = await page.goto(f"{running.http_url}/?voice=espeak-en")
            assert response is not None and "content-security-policy" in response.headers
            await _until(page, f"{demo} && {demo}.tts.state === 'open'", 30)
            # The player's worklet: speech is played out.
            await page.fill("#tts-text", "Hello from the page.")
            await page.click("#speak-button")
            await _until(page, f"{demo}.player.stats.playedMs > 500 && !{demo}.player.stats.playing", 30)
            # The capture worklet: the fake microphone's speech reaches the server and comes back.
            await page.select_option("#mic-mode", "pcm")
            await page.click("#mic-start")
            await _until(page, f"{demo}.transcriber && {demo}.transcriber.state === 'open'", 30)
            await asyncio.sleep(speech_s + 0.5)
            await _until(page, "document.querySelectorAll('.sw-committed').length > 0", 15)
            heard = await page.locator(".sw-committed").first.inner_text()
            await page.click("#mic-stop")
            violations = await page.evaluate("window.cspViolations")
            page_errors = await page.evaluate(f"{demo}.errors.map(String)")
            await browser.close()
    finally:
        running.stop()
    assert heard.strip(), "nothing was transcribed"
    assert violations == [] and errors == [] and page_errors == [], (violations, errors, page_errors)


def test_local_engines_write_no_telemetry(tmp_path: Path) -> None:
    """onnxruntime's telemetry (a device id and an event store under ~/.cache, with upload code)
    stays off when the engines run: Piper and Silero VAD load and run in a fresh process whose
    home is empty, and nothing appears in it. Fails without ``ORT_DISABLE_TELEMETRY``."""
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from speechwire.engines.base import SynthesisOptions\n"
        "from speechwire.engines.piper import PiperEngine\n"
        "from speechwire.engines.vad import SileroVAD\n"
        "e = PiperEngine(); e.load()\n"
        "e.synthesize('hello there', e.voices()[0].voice_id, SynthesisOptions())\n"
        "SileroVAD().probabilities(np.zeros(16000, np.int16))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []

"""docs/browser.md's "From your own page" example, run as documented (issue 15, item 8).

Its two blocks — the page (``index.html``) and its backend (``site.py``) — are taken from the
document, written to a folder and run: the backend by ``.venv/bin/python`` on a second loopback
origin, holding the key; the speechwire server with that key and the site's origin in
``allowed_origins``. Chromium opens the site, the Speak button is clicked, and the server must
have sent speech (its ``speechwire_audio_out_seconds_total``) with no error on the page. The
documented addresses (server 127.0.0.1:8000, site 127.0.0.1:3000) become free ports, the only
change made. A second case: the same page on an origin the server does not list cannot even
load the modules, which is why the setting is documented.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

pytest.importorskip("playwright")
from playwright.async_api import async_playwright

from speechwire.bench.browser import CHROMIUM, launch
from speechwire.config import Settings
from speechwire.server.ops.runner import RunningServer, start_server
from speechwire.testing.serverprocess import free_port

from .browser_support import watched_page

REPO = Path(__file__).resolve().parents[1]
KEY = "sw_key_of_the_site_backend_for_the_test_0000"
SITE_PORT = free_port()
SITE = f"http://127.0.0.1:{SITE_PORT}"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="make test installs Debian's chromium")


def documented_blocks() -> tuple[str, str]:
    """The page and the backend, as docs/browser.md shows them under "From your own page"."""
    text = (REPO / "docs" / "browser.md").read_text(encoding="utf-8")
    section = text.split("## From your own page", 1)[1].split("\n## ", 1)[0]
    html = re.search(r"^```html\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    python = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert html and python, "the section must hold the page (html) and its backend (python)"
    return html.group(1), python.group(1)


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[RunningServer]:
    """As the section says to start it: a key, and the site's origin allowed."""
    running = start_server(
        Settings(tts_engines=["piper"], stt_engines=[], api_keys=[SecretStr(KEY)], allowed_origins=[SITE])
    )
    yield running
    running.stop()


@contextmanager
def site(folder: Path, server: RunningServer, port: int) -> Iterator[str]:
    """The documented page and backend, served from ``folder`` on ``port``."""
    page, backend = documented_blocks()
    address = f"{server.host}:{server.port}"
    (folder / "index.html").write_text(page.replace("127.0.0.1:8000", address))
    listen = '("127.0.0.1", 3000)'
    assert listen in backend, "the backend listens where the section says to open it"
    (folder / "site.py").write_text(
        backend.replace("127.0.0.1:8000", address).replace(listen, f'("127.0.0.1", {port})')
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHWIRE_", "ELEVENLABS_"))}
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "python"), "site.py"],
        cwd=folder,
        env={**env, "SPEECHWIRE_API_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "site.py exited"
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "site.py did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def audio_out_seconds(server: RunningServer) -> float:
    metrics = httpx.get(f"{server.http_url}/metrics", timeout=5).text
    found = re.search(r"^speechwire_audio_out_seconds_total (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def open_and_speak(url: str) -> list[str]:
    """Open the site in Chromium, click Speak, wait a little; the page's errors."""
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            page, errors = await watched_page(browser)
            await page.goto(url)
            await page.wait_for_load_state("networkidle")
            await page.click("#speak")
            await asyncio.sleep(3.0)  # token from the backend, connect, first phrase, playback
            return errors
        finally:
            await browser.close()


def test_the_documented_page_speaks_from_its_own_origin(keyed_server: RunningServer, tmp_path: Path) -> None:
    before = audio_out_seconds(keyed_server)
    with site(tmp_path, keyed_server, SITE_PORT) as url:
        assert KEY not in httpx.get(url, timeout=5).text  # the page never holds the key
        errors = asyncio.run(open_and_speak(url))
    assert errors == [], errors
    spoken = audio_out_seconds(keyed_server) - before
    assert spoken > 0.5, f"the server sent {spoken:.2f} s of speech"


def test_an_origin_the_server_does_not_list_cannot_load_the_modules(
    keyed_server: RunningServer, tmp_path: Path
) -> None:
    before = audio_out_seconds(keyed_server)
    with site(tmp_path, keyed_server, free_port()) as url:
        errors = asyncio.run(open_and_speak(url))
    assert any("CORS" in e or "Failed to fetch" in e or "import" in e.lower() for e in errors), errors
    assert audio_out_seconds(keyed_server) == before

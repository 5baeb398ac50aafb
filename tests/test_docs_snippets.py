"""Every code block in README.md and docs/*.md runs as pasted, against a live server (issue 15, item 3).

Each fenced block is one test, named by file and line:

- ``python``: written to a file and run by ``.venv/bin/python`` in a fresh folder;
- ``sh``: run by ``bash -euo pipefail`` in a fresh folder where ``.venv``, ``examples`` and
  ``Makefile`` are links to the project's, as if pasted in the checkout; ``make run`` (serves until
  stopped) and ``make test`` (the whole suite, this test included) are skipped, by name;
- ``js``: a browser module, run in Chromium (Debian's, through Playwright) on a page of the
  server's own origin; every button the snippet adds is clicked, and no uncaught error or
  rejected promise may follow.

The snippets say ``127.0.0.1:8000``, the address ``make run`` serves, and the CLI's default URL
is that too. The test server listens on a free port instead (8000 may be a user's own server),
so each block is run with ``127.0.0.1:8000`` replaced by the test server's address, and
``speechwire say`` / ``transcribe`` lines without ``--url`` get ``--url`` of the test server:
the only change made to what a reader pastes.

A block that needs what a test machine lacks (a microphone, a cloud key) is marked by an HTML
comment on the line before its fence, ``<!-- snippet: skip (needs a microphone) -->``, and is
skipped with that reason. Any other fence language fails: a block nobody runs rots.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from speechwire.server.ops.runner import RunningServer

if TYPE_CHECKING:
    from playwright.async_api import Page

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LANGUAGES = {"python", "sh", "js"}
DOCUMENTED_ADDRESS = "127.0.0.1:8000"
TIMEOUT_S = 30.0
"""A snippet is a few seconds of work; this bounds one that hangs."""
FENCE = re.compile(r"^```(\S*)\s*$")
SKIP_MARK = re.compile(r"^<!--\s*snippet:\s*skip\s*\((.+)\)\s*-->$")
CLI_CALL = re.compile(r"(speechwire (?:say|transcribe))\b(?![^\n]*--url)")
NOT_RUN_HERE = {
    "make run": "`make run` serves until stopped (the live server here is the test's own)",
    "make test": "`make test` is the whole suite, this test included",
}


@dataclass(frozen=True)
class Snippet:
    document: Path
    line: int
    language: str
    code: str
    skip: str | None

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}:{self.language or 'none'}"


def snippets(document: Path) -> list[Snippet]:
    """The fenced blocks of ``document``, each with the skip reason marked before it, if any."""
    found: list[Snippet] = []
    lines = document.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        before = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        mark = SKIP_MARK.match(before)
        code = "\n".join(lines[start + 1 : end]) + "\n"
        found.append(Snippet(document, start + 1, fence.group(1), code, mark.group(1) if mark else None))
        index = end + 1
    return found


ALL = [snippet for document in DOCUMENTS for snippet in snippets(document)]


def for_server(snippet: Snippet, server: RunningServer) -> str:
    """The block as run here: the documented address replaced by the test server's."""
    address = f"{server.host}:{server.port}"
    code = snippet.code.replace(DOCUMENTED_ADDRESS, address)
    if snippet.language == "sh":
        code = CLI_CALL.sub(rf"\1 --url ws://{address}", code)
    return code


def workdir(tmp_path: Path) -> Path:
    """A fresh folder that looks like the checkout to a pasted command."""
    for name in (".venv", "examples", "Makefile"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHWIRE_", "ELEVENLABS_"))}
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"did not finish in {TIMEOUT_S:.0f} s; output so far:\n{exc.stdout!r}\n{exc.stderr!r}")
    print(f"ran in {time.monotonic() - started:.1f} s\n{done.stdout}{done.stderr}")
    return done


@pytest.mark.parametrize("snippet", ALL, ids=[s.name for s in ALL])
def test_snippet_runs_as_pasted(snippet: Snippet, server: RunningServer, tmp_path: Path) -> None:
    if snippet.skip is not None:
        pytest.skip(snippet.skip)
    assert snippet.language in LANGUAGES, (
        f"{snippet.name}: a fence must say python, sh or js (and be run here), or be marked skipped"
    )
    for command, reason in NOT_RUN_HERE.items():
        if re.search(rf"^\s*{command}\b", snippet.code, re.MULTILINE):
            pytest.skip(reason)
    code = for_server(snippet, server)
    if snippet.language == "js":
        pytest.importorskip("playwright")
        from speechwire.bench.browser import CHROMIUM

        if not Path(CHROMIUM).exists():
            pytest.skip("needs Debian's chromium (make test installs it)")
        asyncio.run(run_in_chromium(code, server))
        return
    folder = workdir(tmp_path)
    if snippet.language == "python":
        (folder / "snippet.py").write_text(code)
        done = run([str(REPO / ".venv" / "bin" / "python"), "snippet.py"], folder)
    else:
        done = run(["bash", "-euo", "pipefail", "-c", code], folder)
    assert done.returncode == 0, f"{snippet.name} failed:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


async def run_in_chromium(code: str, server: RunningServer) -> None:
    """The module on a page of the server's origin (the module's own server mints its tokens);
    then each button it added is clicked, as a user would, and the page must stay error-free."""
    from playwright.async_api import async_playwright

    from speechwire.bench.browser import launch

    from .browser_support import watched_page

    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            page, errors = await watched_page(browser)
            await page.goto(f"{server.http_url}/healthz")
            await page.evaluate("document.body.replaceChildren()")
            await page.add_script_tag(content=code, type="module")
            await asyncio.sleep(1.0)
            before = await audio_out_seconds(page, server)
            for button in await page.locator("button").all():
                await button.click()
                await asyncio.sleep(2.0)  # a reply's first audio and a token round trip, at most
            assert errors == [], errors
            if ".speak(" in code:  # a block that speaks must be heard: the server sent audio
                assert await audio_out_seconds(page, server) > before, "no speech was sent"
        finally:
            await browser.close()


async def audio_out_seconds(page: Page, server: RunningServer) -> float:
    """Seconds of speech the server has sent so far (its Prometheus counter), read by the page's
    own ``fetch`` so the test needs no second HTTP client inside the event loop."""
    metrics: str = await page.evaluate(f"fetch('{server.http_url}/metrics').then((r) => r.text())")
    found = re.search(r"^speechwire_audio_out_seconds_total (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0

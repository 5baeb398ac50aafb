"""CLI failures are one line naming what happened and what to do (issue 15, item 4).

``say`` with no server was 45 lines of traceback, an auth failure 24, a missing input file 35,
the server shutting down during ``transcribe`` 36. Each is now one line on stderr and a non-zero
exit; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from speechwire.server.ops.runner import RunningServer, start_server
from speechwire.testing.serverprocess import ServerProcess, free_port

from .cli_support import Run, light_settings, speechwire
from .conftest import SPEECH_DIR

KEY = "sw_cli-test-9Qv4T7mZp2Lx8Rk3Wn6Yb1Hd"


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    running = start_server(light_settings(dev=False, api_keys=[KEY]))
    yield running
    running.stop()


def one_line(run: Run, *words: str) -> str:
    assert run.code != 0, run
    assert len(run.error_lines) == 1, run.stderr
    line = run.error_lines[0]
    for word in words:
        assert word in line, line
    return line


async def test_say_without_a_server(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    run = await speechwire("say", "hello", "--url", url, "--out", str(tmp_path / "x.wav"))
    one_line(run, "cannot reach", url, "speechwire serve")
    verbose = await speechwire("--verbose", "say", "hello", "--url", url, "--out", str(tmp_path / "x.wav"))
    assert verbose.code != 0 and "Traceback" in verbose.stderr


@pytest.mark.parametrize("key", [None, "sw_wrong-key-5Fh2Jq8Ls3Nv7Xc1Tz4Mb9"])
async def test_say_and_transcribe_with_a_bad_key(
    keyed: RunningServer, tmp_path: Path, key: str | None
) -> None:
    extra = [] if key is None else ["--api-key", key]
    say = await speechwire("say", "hello", "--url", keyed.ws_url, "--out", str(tmp_path / "x.wav"), *extra)
    one_line(say, "refused the key", "SPEECHWIRE_API_KEY")
    tr = await speechwire("transcribe", str(SPEECH_DIR / "jfk.wav"), "--url", keyed.ws_url, *extra)
    one_line(tr, "refused the key", "SPEECHWIRE_API_KEY")


async def test_the_right_key_from_the_environment(keyed: RunningServer, tmp_path: Path) -> None:
    run = await speechwire(
        "say",
        "hello",
        "--url",
        keyed.ws_url,
        "--voice",
        "espeak-en",
        "--out",
        str(tmp_path / "x.wav"),
        SPEECHWIRE_API_KEY=KEY,
    )
    assert run.code == 0, run.stderr


async def test_input_files_that_cannot_be_read(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}"  # never reached: the file is read first
    one_line(await speechwire("transcribe", str(tmp_path / "missing.wav"), "--url", url), "no such file")
    one_line(await speechwire("transcribe", str(tmp_path), "--url", url), "folder")
    for name in ("notes.wav", "notes.mp3", "notes.txt"):
        fake = tmp_path / name
        fake.write_text("these are not audio samples\n" * 20)
        one_line(await speechwire("transcribe", str(fake), "--url", url), "not audio", name)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.wav"
        locked.write_bytes((SPEECH_DIR / "jfk.wav").read_bytes())
        locked.chmod(0)
        one_line(await speechwire("transcribe", str(locked), "--url", url), "permission")


async def test_server_shutting_down_during_transcribe() -> None:
    server = ServerProcess(free_port(), SPEECHWIRE_DRAIN_S="0.5")
    server.start()
    try:
        task = asyncio.create_task(
            speechwire(
                "transcribe", str(SPEECH_DIR / "librivox_concat_long.wav"), "--realtime", "--url", server.url
            )
        )
        await asyncio.sleep(4.0)
        await asyncio.to_thread(server.stop)
        run = await task
    finally:
        server.kill()
    one_line(run, "lost the connection", "incomplete")

"""``wss://`` and ``https://`` in every client and CLI command (issue 15, item 6).

``say --url wss://…`` used to fail with "ssl=None is incompatible with a wss:// URI". Now the
system trust store is used (``SSL_CERT_FILE`` honoured), or ``--cafile`` / ``cafile=``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from speechwire.audio.wav import read_wav
from speechwire.client.multi import MultiContextTTS
from speechwire.client.stt import RealtimeTranscriber
from speechwire.client.tts import TextToSpeechStream
from speechwire.server.ops.runner import RunningServer, start_server

from .cli_support import light_settings, speechwire
from .conftest import SPEECH_DIR, tls_files


@pytest.fixture(scope="module")
def tls(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    certfile, keyfile = tls_files(ca, tmp_path_factory.mktemp("tls"))
    running = start_server(light_settings(), ssl_certfile=certfile, ssl_keyfile=keyfile)
    yield running
    running.stop()


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_cli_over_tls_with_cafile(tls: RunningServer, cafile: str, tmp_path: Path) -> None:
    out = tmp_path / "tls.wav"
    say = await speechwire(
        "say",
        "Hello over TLS.",
        "--url",
        tls.ws_url,
        "--voice",
        "espeak-en",
        "--cafile",
        cafile,
        "--out",
        str(out),
    )
    assert say.code == 0, say.stderr
    pcm, rate = read_wav(out)
    assert len(pcm) > rate // 4
    tr = await speechwire(
        "transcribe", str(SPEECH_DIR / "jfk.wav"), "--url", tls.http_url, "--cafile", cafile, "--json"
    )
    assert tr.code == 0, tr.stderr
    text = " ".join(json.loads(line)["text"] for line in tr.stdout.splitlines() if '"committed"' in line)
    assert "country" in text.lower()


async def test_cli_over_tls_with_ssl_cert_file(tls: RunningServer, cafile: str, tmp_path: Path) -> None:
    run = await speechwire(
        "say",
        "Trusted.",
        "--url",
        tls.ws_url,
        "--voice",
        "espeak-en",
        "--out",
        str(tmp_path / "a.wav"),
        SSL_CERT_FILE=cafile,
    )
    assert run.code == 0, run.stderr


async def test_cli_over_tls_untrusted_is_one_line(tls: RunningServer, tmp_path: Path) -> None:
    run = await speechwire("say", "Nope.", "--url", tls.ws_url, "--out", str(tmp_path / "b.wav"))
    assert run.code != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--cafile" in lines[0], run.stderr


async def test_python_clients_over_tls(tls: RunningServer, cafile: str) -> None:
    async with TextToSpeechStream(tls.http_url, "espeak-en", cafile=cafile) as tts:
        await tts.send("Secure words. ", flush=True)
        chunks = await tts.finish()
    assert any(c.audio for c in chunks)
    async with MultiContextTTS(tls.ws_url, "espeak-en", cafile=cafile) as multi:
        await multi.send("Hi.", flush=True)
        await multi.close_socket()
        got = [event async for event in multi]
    assert got
    async with RealtimeTranscriber(tls.ws_url, cafile=cafile) as stt:
        assert stt.session is not None


async def test_missing_cafile_is_one_line(tls: RunningServer, tmp_path: Path) -> None:
    run = await speechwire("say", "x", "--url", tls.ws_url, "--cafile", str(tmp_path / "nope.pem"))
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.code == 2 and len(lines) == 1 and "--cafile" in lines[0] and "no such file" in lines[0], (
        run.stderr
    )


async def test_bench_over_tls_with_cafile(tls: RunningServer, cafile: str) -> None:
    """The benchmarks that take ``--url`` take ``--cafile`` too (a running TLS server)."""
    run = await speechwire(
        "bench", "barge-in", "--turns", "1", "--voice", "espeak-en", "--url", tls.ws_url, "--cafile", cafile
    )
    assert run.code == 0, run.stderr
    assert "interrupt" in run.stdout

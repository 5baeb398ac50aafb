"""Shared fixtures: the real server under uvicorn on 127.0.0.1 with real engines, and speech data."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from speechwire.config import Settings
from speechwire.server.ops.runner import RunningServer, start_server

SPEECH_DIR = Path(__file__).resolve().parents[2] / "shared" / "speech" / "dev"


@dataclass(frozen=True)
class Utterance:
    path: Path
    duration_s: float
    transcript: str


def speech_manifest() -> list[Utterance]:
    with (SPEECH_DIR / "manifest.tsv").open(encoding="utf-8") as f:
        return [
            Utterance(SPEECH_DIR / row["file"], float(row["duration_s"]), row["transcript"])
            for row in csv.DictReader(f, delimiter="\t")
        ]


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """One real server (Piper and espeak-ng) for the whole test session."""
    running = start_server(Settings(dev=True, tts_engines=["piper", "espeak"]))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def whisper() -> object:
    """The local STT engine used to check that what we synthesise is intelligible."""
    from speechwire.engines.whisper import WhisperEngine

    engine = WhisperEngine()
    engine.load()
    return engine


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority for TLS servers in tests."""
    return trustme.CA()


def tls_files(ca: trustme.CA, folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by ``ca``: (certfile, keyfile) paths."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the SDK's default TLS context (websockets' sync client) trust ``ca``."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return bundle

"""The official JS SDK's ``speechToText.realtime`` under Node (``tests/js/sdk_realtime.mjs``).

``@elevenlabs/elevenlabs-js`` 2.73.0, pinned in ``tests/js/package.json``, is pointed at our server
with ``baseUrl: "http://…"`` (it maps http to ws itself). A dev-set recording streams at real-time
pace; in VAD mode the script's final ``commit()`` comes after VAD committed everything and must be
answered with an empty ``committed_transcript``, no error, the socket open.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from speechwire.bench.wer import corpus_wer
from speechwire.config import Settings
from speechwire.server.ops.runner import RunningServer, start_server

from .conftest import speech_manifest

JS = Path(__file__).parent / "js"
MANIFEST = {u.path.name: u for u in speech_manifest()}
FILES = ["ls_1089-134686-0000.wav", "librivox_0920.wav"]

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (JS / "node_modules" / "@elevenlabs").exists(),
    reason="needs Node and tests/js/node_modules (npm ci in tests/js)",
)


@pytest.fixture(scope="module")
def stt_server() -> Iterator[RunningServer]:
    running = start_server(Settings(dev=True, tts_engines=["espeak"], stt_engines=["moonshine"]))
    yield running
    running.stop()


def run_node(server: RunningServer, name: str, strategy: str) -> dict[str, object]:
    done = subprocess.run(
        ["node", "sdk_realtime.mjs", server.http_url, str(MANIFEST[name].path), strategy],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("strategy", ["vad", "manual"])
def test_js_sdk_realtime(
    stt_server: RunningServer, strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = []
    for name in FILES:
        out = run_node(stt_server, name, strategy)
        assert out["errors"] == [] and out["closedEarly"] is None, out
        config = out["config"]
        assert isinstance(config, dict) and config["vad_commit_strategy"] == strategy
        assert isinstance(out["partials"], int) and out["partials"] > 0
        committed = out["committed"]
        assert isinstance(committed, list) and committed
        if strategy == "vad":
            assert out["afterFinalCommit"] == [""], out  # the harmless final commit, answered
        pairs.append((MANIFEST[name].transcript, " ".join(t for t in committed if t)))
    rate = corpus_wer(pairs).rate
    with capsys.disabled():
        print(f"\nJS SDK realtime ({strategy}): WER {rate:.3f}")
    assert rate <= 0.12, pairs

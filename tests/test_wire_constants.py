"""The browser's ``wire.js`` and Python's protocol layer agree: retry table, backoff, resume rule,
frames.

The table is read from wire.js as JSON; the functions are run under ``node`` on the same inputs
as their Python twins, and their outputs compared.
"""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from speechwire.audio.alignment import CharAlignment
from speechwire.client.reconnect import ReconnectPolicy, backoff
from speechwire.protocol.multi_client import MultiClientSession
from speechwire.protocol.retry import (
    BACKOFF_FACTOR,
    BACKOFF_INITIAL_S,
    BACKOFF_MAX_S,
    RETRY_CLOSE_CODES,
    RETRY_ERRORS,
    decide,
)
from speechwire.protocol.stt_client import STTClientSession
from speechwire.protocol.tts_client import AudioReceived, TTSClientSession, advance_voiced, text_frame

WIRE = Path(__file__).parent.parent / "src" / "speechwire" / "web" / "wire.js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs node")


def run_js(body: str) -> Any:
    """Evaluate ``body`` (which sets ``out``) with wire.js imported as ``w``; its JSON result."""
    script = f'import * as w from "{WIRE.as_uri()}";\nlet out;\n{body}\nconsole.log(JSON.stringify(out));'
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_retry_table_is_the_same_json() -> None:
    found = re.search(r"export const RETRY_TABLE = (\{.*?\});\s*// END RETRY_TABLE", WIRE.read_text(), re.S)
    assert found is not None
    table = json.loads(found.group(1))
    assert table["errors"] == RETRY_ERRORS
    assert table["closeCodes"] == {str(code): retry for code, retry in RETRY_CLOSE_CODES.items()}


def test_backoff_is_one_policy() -> None:
    """Same constants (wire.js's JSON, Python's defaults) and the same delays for the same draw."""
    found = re.search(r"export const BACKOFF = (\{.*?\});\s*// END BACKOFF", WIRE.read_text(), re.S)
    assert found is not None
    constants = {
        "initialMs": BACKOFF_INITIAL_S * 1000,
        "maxMs": BACKOFF_MAX_S * 1000,
        "factor": BACKOFF_FACTOR,
    }
    assert json.loads(found.group(1)) == constants
    policy = ReconnectPolicy()
    assert (policy.initial_s, policy.maximum_s) == (BACKOFF_INITIAL_S, BACKOFF_MAX_S)
    draws = [0.0, 0.5, 0.999]
    js = run_js(
        f"out = {json.dumps(draws)}.map((u) => [...Array(12).keys()].map((n) => "
        "w.backoffDelay(n, { random: () => u })));"
    )

    class Draw(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    python = [[1000 * d for _, d in zip(range(12), backoff(rng=Draw(u)), strict=False)] for u in draws]
    assert [x for row in js for x in row] == pytest.approx([x for row in python for x in row])
    assert max(python[-1]) == pytest.approx(0.999 * BACKOFF_MAX_S * 1000)  # the cap is reached


CASES: list[tuple[int | None, str | None]] = [
    (None, None),
    (1000, None),
    (1006, None),
    (1008, None),
    (1008, "voice_not_found"),
    (1008, "session_time_limit_exceeded"),
    (1008, "input_timeout_exceeded"),
    (1011, "transcriber_error"),
    (1013, "rate_limited"),
    (1009, None),
    (4001, None),
]


def test_decide_agrees() -> None:
    js = run_js(f"out = {json.dumps(CASES)}.map(([c, e]) => w.decide(c, e));")
    assert js == [decide(code, error).value for code, error in CASES]


RESUME: list[tuple[str, list[str]]] = [
    ("Hello there friend. ", ["Hello ", "there"]),
    ("Hello there friend", ["Hello", "there "]),
    ("Hello  there", ["Hello there"]),
    ("Hi there", [" Hi"]),
    ("Hi", ["Hi there"]),
    ("Numbers 3 and 4.", ["Numbers 3 ", "and"]),
    ("", ["x"]),
]


def test_resume_rule_agrees() -> None:
    js = run_js(
        f"out = {json.dumps(RESUME)}.map(([sent, chunks]) => "
        "chunks.reduce((v, c) => w.advanceVoiced(sent, v, [...c]), 0));"
    )
    python = []
    for sent, chunks in RESUME:
        voiced = 0
        for chunk in chunks:
            alignment = CharAlignment(tuple(chunk), (0,) * len(chunk), (0,) * len(chunk))
            voiced = advance_voiced(sent, voiced, AudioReceived(b"", alignment, None))
        python.append(voiced)
    assert js == python


def test_frames_agree() -> None:
    js = run_js(
        """out = [
          w.initFrame(),
          w.initFrame({ contextId: "c1", voiceSettings: { speed: 1.1 } }),
          w.textFrame("Hi. ", { contextId: "c1", flush: true }),
          w.textFrame("Hi. "),
          w.keepAliveFrame("c1"),
          w.closeContextFrame("c1"),
          w.closeSocketFrame(),
          w.audioChunkFrame("AAE=", { sampleRate: 16000 }),
          w.audioChunkFrame("", { sampleRate: 16000, commit: true }),
          w.audioChunkFrame("AAE=", { sampleRate: 16000, previousText: "before" }),
        ];"""
    )
    multi = MultiClientSession()
    _, multi_init = multi.start_context(voice_settings={"speed": 1.1})
    stt = STTClientSession(16000)
    raw = base64.b64decode("AAE=")
    python = [
        TTSClientSession().init(),
        multi_init.replace('"ctx-1"', '"c1"'),
        text_frame("Hi. ", flush=True, context_id="c1"),
        TTSClientSession().text("Hi. "),
        multi.keep_alive("c1"),
        multi.close_context("c1"),
        multi.close_socket(),
        stt.audio(raw),
        stt.commit(),
        STTClientSession(16000).audio(raw, previous_text="before"),
    ]
    assert js == [json.loads(frame) for frame in python if frame is not None]

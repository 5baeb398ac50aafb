"""``speechwire say`` through connections cut mid-audio finishes, every word voiced once.

Before ``reconnect=`` it died with "no close frame received or sent". The audio written through
two cuts must be as long as the fault-free run's (a repeated stretch would lengthen it, a lost one
shorten it) and Whisper must hear the text.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from speechwire.audio.wav import read_wav
from speechwire.bench.wer import wer
from speechwire.server.ops.runner import RunningServer
from speechwire.testing.faultproxy import FaultProxy, Plan

TEXT = (
    "Your meeting with the design team has been moved to three o'clock. "
    "I found two coffee shops within walking distance of your hotel. "
    "Please remember to bring your passport and your boarding pass."
)


async def say(url: str, out: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "speechwire.cli", "say", TEXT, "--url", url, "--voice", "joe"],
        *["--format", "pcm_16000", "--out", str(out)],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, output.decode()


async def test_say_through_cuts_voices_every_word_once(
    server: RunningServer, whisper: object, tmp_path: Path
) -> None:
    code, output = await say(server.ws_url, tmp_path / "clean.wav")
    assert code == 0, output
    clean, rate = read_wav(tmp_path / "clean.wav")

    cuts = {0: 40_000, 1: 90_000}  # bytes both ways: each cut falls mid-audio
    proxy = await FaultProxy("127.0.0.1", server.port, planner=lambda n: Plan(cut_after=cuts.get(n))).start()
    try:
        code, output = await say(f"ws://127.0.0.1:{proxy.port}", tmp_path / "cut.wav")
    finally:
        await proxy.stop()
    assert code == 0, output
    assert proxy.cuts == 2 and proxy.connections == 3
    pcm, cut_rate = read_wav(tmp_path / "cut.wav")
    assert cut_rate == rate
    assert abs(len(pcm) - len(clean)) < 0.15 * len(clean), (len(pcm) / rate, len(clean) / rate)
    heard = whisper.transcribe(pcm).text  # type: ignore[attr-defined]
    assert wer(TEXT, heard).rate <= 0.10, heard
    assert len(heard.split()) <= len(TEXT.split()) + 1, heard  # nothing said twice

"""``speechwire bench languages``: one small round through the real CLI, espeak-ng and Whisper base.

The speech is synthetic (espeak-ng, spoken in a child process) and the engine runs in the test's
process, as the bench does by default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechwire.bench.languages import error_rate
from speechwire.cli import main


def test_scoring_keeps_every_script() -> None:
    # wer.normalize keeps ASCII letters only: "sœur" and "acheté" would vanish there.
    french = error_rate("Ma sœur a acheté du pain.", "ma sœur a achete du pain", by_character=False)
    assert (french.substitutions, french.words) == (1, 6)
    # Character scoring for scripts without spaces: one traditional character for a simplified one.
    chinese = error_rate("火车每天早上", "火車每天早上。", by_character=True)
    assert (chinese.substitutions, chinese.deletions, chinese.insertions, chinese.words) == (1, 0, 0, 6)


def test_one_round_english_and_spanish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "languages.json"
    assert main(["bench", "languages", "--languages", "en,es", "--sentences", "1", "--json", str(out)]) == 0
    assert "Synthetic speech" in capsys.readouterr().out
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["speech"] == "synthetic, espeak-ng" and report["engine_calls"] == "in-process"
    scores = {s["language"]: s for s in report["engines"]["whisper_base"]}
    assert set(scores) == {"en", "es"}
    # Measured on this machine: en 44 % WER (4 of 9 words: espeak's "every morning at seven" is
    # heard as "and remodeling at salmon"), es 17 % (2 of 12); both detected right.
    assert scores["en"]["metric"] == "wer" and scores["en"]["rate"] <= 0.6, report["sentences"]
    assert scores["es"]["rate"] <= 0.35, report["sentences"]
    assert all(s["detected"] == [code] == [s["detected_joined"]] for code, s in scores.items()), scores
    assert all(s["decode_ms_p50"] > 0 and s["rtf"] > 0 for s in scores.values())


def test_unknown_language_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "languages", "--languages", "en,xx"]) == 1
    err = capsys.readouterr()
    assert "unknown language xx" in err.out + err.err and "fr" in err.out + err.err

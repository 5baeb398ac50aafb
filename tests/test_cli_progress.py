"""Long work shows progress, and piped results are whole (issue 15, item 7): bench tables are not
cut at 80 columns when stdout is a pipe, and ``bench stt`` steps are plain lines, not bar redraws,
when stderr is one."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rich.console import Console

from speechwire.bench.stt import Steps

PRINT_REPORT = """
from speechwire.bench.stt import Report, print_report
from speechwire.consoles import stdout_console

report = Report(
    engine="moonshine",
    per_file=[{"file": "librivox_0870_a_rather_long_file_name_from_the_dev_set_chapter_12.wav", "wer": 0.0625,
               "words": 1234, "hypothesis": "x"}],
    overall_wer=0.0625,
    latency={"manual_commit_to_committed_p95_ms": 123.4},
    capacity=[{"streams": 6, "partial_interval_p95_s": 0.8, "eos_to_commit_max_s": 1.2,
               "wer_max": 0.1, "realtime_ok": True}],
    max_realtime_streams=6,
)
print_report(stdout_console(), report)
"""


def test_bench_tables_are_not_cut_when_piped() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PRINT_REPORT],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "80"},  # what rich falls back to without a terminal
    ).stdout
    row = next(line for line in out.splitlines() if "librivox_0870" in line)
    assert "1234" in row and "6.2%" in row and len(row) > 80  # the whole row on one line
    capacity = next(line for line in out.splitlines() if "end of speech" in line)
    assert "real time" in capacity and len(capacity) > 80


def test_steps_are_plain_lines_when_not_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    with Steps(console) as steps:
        steps.phase("WER", 2)
        steps.step("a.wav: WER 0.0%")
        steps.step("b.wav: WER [5.0%]")
    assert buffer.getvalue().splitlines() == ["[1/2] WER: a.wav: WER 0.0%", "[2/2] WER: b.wav: WER [5.0%]"]

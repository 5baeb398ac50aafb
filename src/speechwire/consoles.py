"""The rich consoles the CLI and the benchmarks print through.

Why a factory: rich assumes 80 columns when its output is not a terminal, so a results table
piped to a file or ``tee`` (a CI log) was cut or wrapped at 80 columns. Piped, these consoles
are wide instead; a table is only as wide as its contents, so nothing gets padded.
"""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 240
"""Columns when not a terminal: wider than any of the benchmark tables."""


def stdout_console() -> Console:
    """Results (tables, transcripts): the terminal's width, or ``PIPED_WIDTH`` when piped."""
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)


def stderr_console() -> Console:
    """Progress and status lines, kept off stdout so piped results stay clean."""
    return Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=PIPED_WIDTH)

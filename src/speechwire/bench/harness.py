"""What every benchmark does the same way: reach a server (``--url``, or one started for the run),
sum timings up, print the tables and write ``--json``, so each benchmark module says only what
it measures and how."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from speechwire.client.latency import percentile
from speechwire.testing.serverprocess import ServerProcess, free_port

if TYPE_CHECKING:
    from speechwire.config import Settings
    from speechwire.server.ops.runner import RunningServer


def machine() -> dict[str, Any]:
    """Where the figures were measured, stored beside them in the JSON."""
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


def spread(values: Sequence[float], scale: float = 1.0) -> tuple[float, float, float]:
    """(p50, p95, max) of ``values`` times ``scale`` (1000: seconds to ms); NaN, NaN, 0 for none."""
    return scale * percentile(values, 50), scale * percentile(values, 95), scale * max(values, default=0.0)


def table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], right_from: int | None = None
) -> Table:
    """A results table; the columns from ``right_from`` on (the figures) are right-aligned."""
    out = Table(title=title)
    for i, column in enumerate(columns):
        out.add_column(column, justify="right" if right_from is not None and i >= right_from else "left")
    for row in rows:
        out.add_row(*(str(cell) for cell in row))
    return out


def yes_no(ok: bool) -> str:
    return "yes" if ok else "no"


def write_json(path: str | None, data: Any) -> None:
    """``--json PATH``: the results as JSON too (folders made as needed)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2), encoding="utf-8")


@contextmanager
def in_process(settings: Settings) -> Iterator[RunningServer]:
    """A server in this process (uvicorn on a free loopback port) for the length of the block."""
    from speechwire.server.ops.runner import start_server

    running = start_server(settings)
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def server_url(url: str | None, **dev_settings: Any) -> Iterator[str]:
    """``url`` (a running server), or a dev server started in this process with ``dev_settings``."""
    if url is not None:
        yield url
        return
    from speechwire.config import Settings

    with in_process(Settings(dev=True, **dev_settings)) as running:
        yield running.ws_url


def full_server() -> ServerProcess:
    """``speechwire serve --dev`` with every engine, as its own process (its CPU and memory are
    its own, and it can be killed), logging warnings only."""
    return ServerProcess(free_port(), "--log-level", "warning", light=False)

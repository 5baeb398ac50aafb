"""Running ``speechwire`` as a user does: a subprocess, its exit code, stdout and stderr."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

from speechwire.config import Settings


def light_settings(**overrides: object) -> Settings:
    """espeak and Moonshine only: a server that starts in about a second."""
    options: dict[str, object] = {"dev": True, "tts_engines": ["espeak"], "stt_engines": ["moonshine"]}
    options.update(overrides)
    return Settings(**options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


async def speechwire(*args: str, **env: str) -> Run:
    """``speechwire ARGS`` in a subprocess (SPEECHWIRE_API_KEY cleared unless given)."""
    environ = {k: v for k, v in os.environ.items() if k != "SPEECHWIRE_API_KEY"}
    environ.update(env)
    environ["COLUMNS"] = "80"  # stderr lines must stay one line whatever the width
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "speechwire.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return Run(proc.returncode or 0, out.decode(), err.decode())

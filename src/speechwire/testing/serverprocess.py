"""``speechwire serve`` as a real process, for tests that kill and restart the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``speechwire serve --dev`` as a real process, so it can be killed as a crash kills it and
    its CPU and memory read from /proc as its own.

    ``light`` (the default) loads espeak and Moonshine only, so it starts in about a second;
    ``env`` overrides any setting (``SPEECHWIRE_…``), ``args`` are extra ``serve`` options.
    ``log_to`` keeps the server's log (its stderr) in that file, for tests that check what it
    says; otherwise it is discarded, so a test's output stays quiet.
    """

    def __init__(
        self, port: int, *args: str, light: bool = True, log_to: Path | None = None, **env: str
    ) -> None:
        self.port = port
        self.args = args
        self.log_to = log_to
        engines = {"SPEECHWIRE_TTS_ENGINES": '["espeak"]', "SPEECHWIRE_STT_ENGINES": '["moonshine"]'}
        self.env = {**os.environ, **(engines if light else {}), **env}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the process and return once it accepts connections."""
        cmd = [sys.executable, "-m", "speechwire.cli", "serve", "--dev", "--port", str(self.port), *self.args]
        with open(self.log_to or os.devnull, "wb") as err:  # the child keeps its own copy
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL: the crash a client must survive (no close frames, no drain)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM: the server drains its sessions and exits, as in a deploy."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

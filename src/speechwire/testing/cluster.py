"""Redis, N speechwire replicas and HAProxy in front of them, all real processes on loopback.

What a deployment past one machine looks like (``deploy/haproxy.cfg``, docs/deploy.md), small
enough for a test or a benchmark to start, break (SIGKILL, SIGTERM) and tear down: the same
HAProxy configuration file that ships, filled through its environment variables.
"""

from __future__ import annotations

import concurrent.futures
import csv
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from speechwire.testing.serverprocess import ServerProcess, free_port

HAPROXY_CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "haproxy.cfg"
"""The configuration that ships (a source checkout's ``deploy/``)."""


def haproxy_binary() -> str | None:
    """Debian installs HAProxy in /usr/sbin, which is not on a user's PATH."""
    debian = "/usr/sbin/haproxy"
    return shutil.which("haproxy") or (debian if os.access(debian, os.X_OK) else None)


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Return once something accepts TCP connections on loopback ``port`` (raise if ``proc``
    exits first: a bad configuration should fail at once, not after the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s:g} s")


class RedisProcess:
    """Debian's ``redis-server`` on a free loopback port, no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 10, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


class Cluster:
    """Redis, ``replicas`` ``speechwire serve`` processes sharing it, and HAProxy on ``lb_port``.

    ``env`` is given to every replica (``SPEECHWIRE_…`` settings) on top of what a replica behind
    this balancer needs: ``SPEECHWIRE_REDIS_URL`` and ``SPEECHWIRE_TRUSTED_PROXIES`` (HAProxy
    connects from 127.0.0.1). ``light`` replicas load espeak and Moonshine only (a second to
    start). ``log_dir`` keeps every process's log there (HAProxy's state changes, the servers'
    stderr). Use as a context manager: every process is stopped on the way out, whatever failed.
    """

    def __init__(
        self,
        replicas: int = 2,
        *,
        env: dict[str, str] | None = None,
        light: bool = True,
        log_dir: Path | None = None,
        config: Path = HAPROXY_CONFIG,
    ) -> None:
        haproxy = haproxy_binary()
        if haproxy is None or shutil.which("redis-server") is None:
            raise RuntimeError("needs Debian's haproxy and redis-server (make test installs them)")
        self.haproxy_binary = haproxy
        if not config.exists():
            raise RuntimeError(f"no HAProxy configuration at {config} (a source checkout has it)")
        self.config = config
        self.redis = RedisProcess()
        self._tmp = tempfile.TemporaryDirectory(prefix="speechwire-cluster-")
        self.log_dir = log_dir or Path(self._tmp.name)
        replica_env = {
            "SPEECHWIRE_REDIS_URL": self.redis.url,
            "SPEECHWIRE_TRUSTED_PROXIES": "127.0.0.1",
            **(env or {}),
        }
        self.replicas = [
            ServerProcess(
                free_port(), light=light, log_to=self.log_dir / f"replica{i + 1}.log", **replica_env
            )
            for i in range(replicas)
        ]
        self.lb_port = free_port()
        self.stats_socket = Path(self._tmp.name) / "haproxy.sock"
        self.haproxy: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where clients connect: HAProxy."""
        return f"ws://127.0.0.1:{self.lb_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 90.0) -> None:
        """Redis, then every replica (at once), then HAProxy; returns when HAProxy has every
        replica UP (its readiness checks passed)."""
        self.redis.start()
        with concurrent.futures.ThreadPoolExecutor(len(self.replicas)) as pool:
            for started in [pool.submit(r.start, timeout_s) for r in self.replicas]:
                started.result()
        env = {
            **os.environ,
            "SPEECHWIRE_LB_BIND": f"127.0.0.1:{self.lb_port}",
            "SPEECHWIRE_LB_STATS_SOCKET": str(self.stats_socket),
        }
        for i, replica in enumerate(self.replicas, 1):
            env[f"SPEECHWIRE_REPLICA_{i}"] = f"127.0.0.1:{replica.port}"
        with open(self.log_dir / "haproxy.log", "wb") as log:
            self.haproxy = subprocess.Popen(
                [self.haproxy_binary, "-db", "-f", str(self.config)], env=env, stdout=log, stderr=log
            )
        wait_for_port(self.lb_port, 10, self.haproxy)
        for i in range(len(self.replicas)):
            self.wait_status(i, "UP", timeout_s)

    def stop(self) -> None:
        """Stop everything (HAProxy first, so no client reaches a half-stopped replica)."""
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(5)
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.kill()
        self.redis.stop()
        self._tmp.cleanup()

    # What HAProxy thinks
    def statuses(self) -> list[str]:
        """Each replica's state in HAProxy (``UP``, ``DOWN``, ``UP 1/2``, ``MAINT``…), in order."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(self.stats_socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = list(csv.reader(data.decode().lstrip("# ").splitlines()))
        header, body = rows[0], [r for r in rows[1:] if r]
        by_name = {r[header.index("svname")]: r[header.index("status")] for r in body}
        return [by_name.get(f"replica{i + 1}", "?") for i in range(len(self.replicas))]

    def wait_status(self, replica: int, status: str, timeout_s: float = 30.0) -> float:
        """Wait until HAProxy reports ``status`` for replica ``replica`` (0-based); seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.statuses()[replica] == status:
                return time.monotonic() - start
            time.sleep(0.05)
        raise TimeoutError(f"replica{replica + 1} not {status} after {timeout_s:g} s: {self.statuses()}")

    # What the replicas say
    def metrics(self, replica: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """One replica's /metrics: {(sample name, sorted labels): value}."""
        text = httpx.get(f"http://127.0.0.1:{self.replicas[replica].port}/metrics", timeout=5).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def sessions_open(self, replica: int) -> dict[str, int]:
        """Open WebSocket sessions on one replica by kind (``tts``, ``tts_multi``, ``stt``)."""
        return {
            dict(labels)["kind"]: int(value)
            for (name, labels), value in self.metrics(replica).items()
            if name == "speechwire_sessions_open"
        }

    def readiness(self, replica: int) -> tuple[int, dict[str, Any]]:
        """One replica's ``GET /readyz``: status code and body."""
        answer = httpx.get(f"http://127.0.0.1:{self.replicas[replica].port}/readyz", timeout=5)
        body: dict[str, Any] = answer.json()
        return answer.status_code, body

    # Breaking it
    def kill(self, replica: int) -> float:
        """SIGKILL one replica (a crash: no close frames, no drain); the monotonic time of the
        signal (taken before it is sent: reaping the process can take longer than a client's
        reconnect on a loaded machine)."""
        died = time.monotonic()
        self.replicas[replica].kill()
        return died

    def restart(self, replica: int, timeout_s: float = 60.0) -> None:
        """Start a stopped replica again on its port and wait until HAProxy has it UP."""
        self.replicas[replica].start(timeout_s)
        self.wait_status(replica, "UP", timeout_s)

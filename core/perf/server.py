"""The app as a subprocess, the way `make run` starts it (`python -m core serve`, the repository's
.streamlit/config.toml), on a free localhost port, with sign-in off, in a throwaway home."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.config import REPO_ROOT
from core.pacs.testing import free_port


class ServerError(RuntimeError):
    """The app did not start (its log's tail is in the message)."""


@dataclass
class AppServer:
    proc: subprocess.Popen
    url: str
    log: Path
    started: float  # time.monotonic() just before the process was started

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def start_app(home: Path, env: dict[str, str] | None = None, device: str = "cpu") -> AppServer:
    """Start `python -m core serve` on 127.0.0.1 (NEUROGRADE_AUTH=off, NEUROGRADE_HOME=home)."""
    port = free_port()
    log = home / "app.log"
    environment = dict(
        os.environ,
        NEUROGRADE_HOME=str(home),
        NEUROGRADE_AUTH="off",
        NEUROGRADE_DEVICE=device,
        PYTHONUNBUFFERED="1",
        **(env or {}),
    )
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core", "serve", "--address", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return AppServer(proc, f"http://127.0.0.1:{port}/", log, started)


def wait_healthy(server: AppServer, timeout: float = 120.0) -> float:
    """Seconds from the process start until Streamlit's health check answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(f"the app exited with status {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - server.started
        except OSError:
            pass
        time.sleep(0.1)
    raise ServerError(f"the app did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def stop_app(server: AppServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=5)

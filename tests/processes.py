"""knflow processes for tests (function services, routers, dispatchers): a free port, readiness polled
on /healthz with a deadline, output kept in a file and shown when a start fails; kill -9 for crash tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    def __init__(self, args: list[str], log_path: Path, port: int | None = None, env: dict[str, str] | None = None, ready_text: str | None = None) -> None:
        self.args = args
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.ready_text = ready_text or ("" if port else "knflow: ")

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> "Process":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "knflow.cli", *self.args], stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"knflow {' '.join(self.args)} exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"knflow {' '.join(self.args)} not ready in {timeout_s} s:\n{self.output()}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        """A service answers /healthz; a worker has printed its start line."""
        if self.port:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        return self.ready_text in self.output(max_chars=10**6)

    def output(self, max_chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-max_chars:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

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
from typing import Self
from pathlib import Path

STARTUP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    def __init__(
        self,
        args: list[str],
        log_path: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        ready_text: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = args
        self.cwd = cwd
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.ready_text = ready_text or ("" if port else "knflow: ")

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> Process:
        return self.launch().wait_ready(timeout_s)

    def launch(self) -> Process:
        """Start the process without waiting (several at once: launch each, then `wait_ready` each)."""
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the file descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "knflow.cli", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
            )
        return self

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> Process:
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.proc.poll() is not None:
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

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ServerProcess:
    """A third-party server (nx-27017, redis-server) on a free port, its output kept in its work folder.

    A subclass gives `name`, `argv` and `ping()` (True once it answers; raising is "not yet"). A start that
    fails raises with the server's own output, as nats.py's test servers do.
    """

    name = "server"

    def __init__(self, binary: str, workdir: str | Path) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def argv(self) -> list[str]:
        raise NotImplementedError

    def ping(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S, poll_interval_s: float = 0.02, port: int = 0) -> Self:
        """Start on `port` (0: a free one; a restart passes its old one, so that clients reconnect)."""
        self.port = port or free_port()
        with open(self.workdir / "output.txt", "wb") as out:
            self._proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                self._fail(f"exited during startup (exit status {self._proc.returncode})")
            try:
                if self.ping():
                    return self
                why = "no answer"
            except Exception as e:
                why = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                self._fail(f"did not answer within {timeout_s} s ({why})")
            time.sleep(poll_interval_s)

    def output(self, max_chars: int = 4000) -> str:
        path = self.workdir / "output.txt"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-max_chars:] or "(no output)"

    def _fail(self, what: str) -> None:
        self.stop()
        log = "\n".join(f"    {line}" for line in self.output().splitlines())
        raise RuntimeError(f"{self.name} `{' '.join(self.argv)}` {what}. Its output:\n{log}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

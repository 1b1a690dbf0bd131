"""Cold start as Knative pays it on scale from zero, and the cost of `import knflow`.

- `knflow serve function bench-a` is started; the time to its first 200 on /healthz, and to its first
  invoke answered (a binary-mode CloudEvent POSTed to /), each from the moment the process was spawned;
- `python -X importtime -c 'import knflow'`: the cumulative import time of the `knflow` package.
Each is the median of `repeat` tries. Both are wall-clock times, as a new pod pays them; beside them the
CPU the process spent (to its first invoke answered; on `import knflow`), which a busy machine does not
inflate as much.
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import cpu
from bench.celery_baseline import free_port
from bench.pipelines import FUNCTIONS_MODULE

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.002
DEADLINE_S = 30.0


def _invoke_request() -> tuple[dict[str, str], bytes]:
    from broker import codec, events

    ev = events.invoke_event(
        run_id="coldstart", pipeline="bench", node="a", attempt=1, function="bench-a", inputs={"n": 1}, config={}
    )
    return codec.encode_binary(ev)


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()


def function_start() -> dict[str, float]:
    """One cold start: spawn → first 200 on /healthz → first invoke answered."""
    headers, body = _invoke_request()
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "knflow.cli",
        "serve",
        "function",
        "bench-a",
        "--functions",
        FUNCTIONS_MODULE,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stderr is not None  # stderr=PIPE
    try:
        while _request(port, "GET", "/healthz") != 200:
            if proc.poll() is not None or time.perf_counter() - started > DEADLINE_S:
                proc.kill()  # its stderr ends only when it does: read it after, or the bench blocks here
                proc.wait(10)
                raise RuntimeError(f"knflow serve function did not come up: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(POLL_S)
        healthy = time.perf_counter()
        status = _request(port, "POST", "/", body, headers)
        if status != 200:
            raise RuntimeError(f"the first invoke answered HTTP {status}")
        answered = time.perf_counter()
        stat = cpu.process_cpu_s(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "healthz_ms": (healthy - started) * 1000,
        "first_invoke_ms": (answered - started) * 1000,
        "first_invoke_cpu_ms": float("nan") if stat is None else stat * 1000,
    }


def import_time_ms() -> float:
    """`python -X importtime -c 'import knflow'`: the cumulative microseconds of the top-level `knflow`."""
    out = _python("-X", "importtime", "-c", "import knflow").stderr
    for line in out.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == "knflow":
            return int(parts[1]) / 1000
    raise RuntimeError(f"no 'knflow' line in -X importtime output:\n{out[-2000:]}")


IMPORT_CPU = "import time\nt = time.process_time()\nimport knflow\nprint(time.process_time() - t)"


def import_cpu_ms() -> float:
    """The CPU that `import knflow` costs a fresh interpreter, in ms."""
    out = _python("-c", IMPORT_CPU).stdout
    return float(out.strip().splitlines()[-1]) * 1000


def run(repeat: int = 5) -> dict[str, float]:
    starts = [function_start() for _ in range(repeat)]
    imports = [import_time_ms() for _ in range(repeat)]
    import_cpu = [import_cpu_ms() for _ in range(repeat)]
    return {
        "healthz_ms": statistics.median(s["healthz_ms"] for s in starts),
        "first_invoke_ms": statistics.median(s["first_invoke_ms"] for s in starts),
        "first_invoke_cpu_ms": statistics.median(s["first_invoke_cpu_ms"] for s in starts),
        "import_knflow_ms": statistics.median(imports),
        "import_knflow_cpu_ms": statistics.median(import_cpu),
        "tries": repeat,
    }


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter of this venv on `args`, importing this checkout."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )

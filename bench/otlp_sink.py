"""Traces on for a bench mode (`nats-traced`): an OTLP/HTTP receiver in a process of its own (it decodes and
counts what it gets, off the bench's cores as far as two cores allow), and OTEL_* pointing this process at it.

    python -m bench.otlp_sink      prints `listening URL`, and `spans N` when stopped (SIGTERM)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO, cast

ENV = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME")


@contextlib.contextmanager
def traced(service: str = "knflow-bench") -> Iterator[dict[str, int]]:
    """Tracing on in this process while inside, exporting to a sink process; yields {"spans": N}, filled in
    once the sink has stopped (after this process flushed what it held)."""
    from broker import tracing

    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.otlp_sink"], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    out = cast(IO[str], proc.stdout)
    url = out.readline().split()[-1]
    counted = {"spans": 0}
    before = {k: os.environ.get(k) for k in ENV}
    os.environ.update(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces",
            "OTEL_SERVICE_NAME": service,
        }
    )
    try:
        if not tracing.configure(service):
            raise RuntimeError("tracing did not turn on: is the otel extra installed? pip install 'knflow[otel]'")
        yield counted
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        tracing.configure()  # off: the provider flushes what it holds to the sink
        proc.send_signal(signal.SIGTERM)
        counted["spans"] = int(out.read().split()[-1])
        proc.wait(10)


def main() -> None:
    from tests.otlp_receiver import OtlpReceiver

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with OtlpReceiver() as receiver:
        print("listening", receiver.url, flush=True)
        stop.wait()
        print("spans", len(receiver.spans), flush=True)


if __name__ == "__main__":
    main()

"""`knflow dev`: the local stack in one command.

The router on http://127.0.0.1:8080 (open without tokens, on loopback only; with KNFLOW_ADMIN_TOKEN set
it asks for tokens as `knflow serve router` does, and may bind another `--host`); a nats-server (the one
`--nats` names, else one started here when the binary is available, with its store under `.knflow/nats`,
else the in-memory broker); the functions in this process, or with `--isolate` each as its own
`knflow serve function` process reached over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import structlog

from broker import extensions as ext
from broker.errors import KnflowError
from broker.redact import mask_url
from knflow import eventloop
from knflow.settings import DEFAULT_STORE, Settings
from router import environments
from datetime import UTC


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_function(name: str, modules: list[str], timeout_s: float = 20.0) -> tuple[subprocess.Popen, str]:
    """Start `knflow serve function NAME` on a free port; wait for /healthz."""
    port = free_port()
    args = [sys.executable, "-m", "knflow.cli", "serve", "function", name, "--host", "127.0.0.1", "--port", str(port)]
    for m in modules:
        args += ["--functions", m]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr is not None else ""
            raise KnflowError(f"function service '{name}' exited with {proc.returncode}: {stderr[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise KnflowError(f"function service '{name}' did not answer {url}/healthz within {timeout_s} s")


LOOPBACK_HOSTS = {"localhost", "::1"}


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_access(settings: Settings, host: str) -> tuple[str | None, str]:
    """(the bootstrap admin token, how the banner describes access): open only on loopback."""
    if settings.admin_token:
        from knflow.serve import api_access as router_access

        return router_access(settings, False, host)[0], "tokens required (KNFLOW_ADMIN_TOKEN)"
    if not is_loopback(host):
        raise KnflowError(
            f"knflow dev --host {host} would open the router API beyond this machine; "
            "set KNFLOW_ADMIN_TOKEN to require tokens, or keep the default --host 127.0.0.1"
        )
    return None, "API open without tokens (loopback only; set KNFLOW_ADMIN_TOKEN to require them)"


def cmd_dev(args: argparse.Namespace) -> int:
    from functions.registry import load_module
    from router.loader import load

    settings = Settings()
    settings.env = args.env or settings.env
    api_access(settings, args.host)  # before anything starts
    modules = settings.function_modules + args.functions
    for ref in modules:
        load_module(ref)
    files = list(args.pipelines)
    for path in files:  # load now: modules named in the files join the function services' modules
        p = load(path)
        modules += [str(Path(path).parent / m) if m.endswith(".py") else m for m in p.functions]
    eventloop.run(_dev(args, settings, files, modules))
    return 0


async def _dev(args: argparse.Namespace, settings: Settings, files: list[str], modules: list[str]) -> None:
    from broker.natsserver import NatsServer, current_nats_server
    from knflow.serve import router_stack, serve_app
    from router.service import create_app

    admin_token, access = api_access(settings, args.host)
    nats_url, server = args.nats or settings.nats_url, None
    if not nats_url and not args.memory:
        binary = current_nats_server()
        if binary:
            server = NatsServer(binary, Path(".knflow/nats")).start()
            nats_url = server.url
    procs: list[subprocess.Popen] = []
    scraped = {"router and dispatchers": f"http://{args.host}:{args.port}/metrics"}  # printed: where /metrics is
    try:
        async with router_stack(settings, args.store or settings.store, nats_url, files) as (router, catalog, stack):
            where = f"NATS {mask_url(nats_url)}" if nats_url else "the in-memory broker"
            if nats_url:
                for name in await _functions_to_serve(catalog):
                    url = None
                    if args.isolate:
                        proc, url = await asyncio.to_thread(spawn_function, name, modules)
                        procs.append(proc)
                        scraped[f"function {name}"] = f"{url}/metrics"
                    await stack.serve_function(name, url)
            print(
                f"knflow dev: router on http://{args.host}:{args.port} ({access}), broker {where}, "
                f"store {mask_url(args.store or settings.store)}\n"
                f"knflow dev: dashboard on http://{args.host}:{args.port}/ui/"
                + (
                    ""
                    if admin_token is None
                    else " (sign in with KNFLOW_ADMIN_TOKEN or a token from `knflow token create`)"
                ),
                file=sys.stderr,
                flush=True,
            )
            print(
                "knflow dev: metrics: " + ", ".join(f"{k} {v}" for k, v in scraped.items()), file=sys.stderr, flush=True
            )
            ticker = asyncio.create_task(fire_schedules(router, catalog))
            try:
                await serve_app(
                    create_app(
                        router,
                        catalog,
                        settings.max_body_bytes,
                        settings.webhook_secret,
                        admin_token=admin_token,
                        open_api=admin_token is None,
                        metrics_token=None
                        if settings.metrics_token is None
                        else settings.metrics_token.get_secret_value(),
                    ),
                    args.host,
                    args.port,
                )
            finally:
                ticker.cancel()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        if server is not None:
            server.stop()


async def fire_schedules(router: Any, catalog: Any, clock: Any = None) -> None:
    """Fire cron triggers as Knative's PingSources would: a `dev.knative.sources.ping` event per tick,
    with the trigger's data and `knflowpipeline`, through the router's ingress (so ids dedupe ticks)."""
    from datetime import datetime

    from broker import events
    from router.triggers import PING_TYPE, next_ticks

    now = clock or (lambda: datetime.now(UTC))
    while True:
        ticks = next_ticks(await catalog.all(), now())
        if not ticks:
            await asyncio.sleep(30)  # pipelines may be PUT later
            continue
        when, pipeline, trigger = ticks[0]
        await asyncio.sleep(max(0.0, (when - now()).total_seconds()))
        tick = events.make_event(
            {
                "type": PING_TYPE,
                "source": f"/knflow/dev/cron/{pipeline.name}",
                "id": f"{pipeline.name}@{when.isoformat()}",
                "datacontenttype": events.JSON,
                ext.PIPELINE: pipeline.name,
            },
            trigger.data if trigger.data is not None else {},
        )
        try:
            await router.ingest(tick, [pipeline])
        except Exception as exc:  # a tick that cannot start its run is logged, and the next one comes
            structlog.get_logger("knflow.dev").warning("cron tick failed", pipeline=pipeline.name, error=str(exc))


async def _functions_to_serve(catalog: Any) -> list[str]:
    from functions.registry import REGISTRY

    names = {n.function for p in await catalog.all() for n in p.nodes.values()}
    names |= {
        name
        for name in REGISTRY.names()
        if (spec := REGISTRY.find(name)) is not None and not spec.fn.__module__.startswith("functions.builtins")
    }
    return sorted(names)


def add_command(sub: Any, functions_arg: Any) -> None:
    p = sub.add_parser("dev", help="the local stack: router, broker (NATS when available), functions")
    p.add_argument("pipelines", nargs="*", metavar="PIPELINE")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; another address needs KNFLOW_ADMIN_TOKEN")
    p.add_argument("--nats", help="a NATS URL; default: start nats-server if it is installed")
    p.add_argument("--memory", action="store_true", help="use the in-memory broker even if nats-server is installed")
    p.add_argument("--isolate", action="store_true", help="run each function as its own HTTP service process")
    p.add_argument("--store", help=f"run store URL (default {DEFAULT_STORE})")
    p.add_argument("--env", type=environments.env_arg, metavar="NAME", help=environments.ENV_HELP)
    functions_arg(p)
    p.set_defaults(fn=cmd_dev)

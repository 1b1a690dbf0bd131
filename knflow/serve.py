"""Long-running processes: `knflow serve function|router|dispatcher` and `knflow dev`.

serve function NAME      one function on Knative's HTTP contract (PORT, KNFLOW_FUNCTION, KNFLOW_FUNCTIONS)
serve router             the router service; with --nats it also consumes results from the stream,
                         with K_SINK it publishes to Knative's broker, else an in-memory broker;
                         --broker-ingress: only /events and /dead-letter, external events without a token
                         (the cluster-local Service Knative's Triggers deliver to)
serve dispatcher         a worker: delivers functions' invokes from NATS, in-process or to their URLs
dev                      the local stack in one command: router, broker, functions
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from typing import Any
from collections.abc import AsyncIterator, Mapping

import structlog

from broker.errors import KnflowError
from broker.redact import mask_url
from knflow import eventloop
from knflow.settings import Settings
from router import environments

log = structlog.get_logger("knflow.serve")


def _load(modules: list[str]) -> None:
    from functions.registry import load_module

    for ref in modules:
        load_module(ref)


async def serve_app(app: Any, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    """Serve `app` until SIGINT or SIGTERM, then return, so that the caller's cleanup runs (the nats-server
    and function processes `knflow dev` started, the router's store and connections)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:  # uvicorn's own re-raises the signal after shutdown: no cleanup then
            yield

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            stop = getattr(getattr(app, "state", None), "stop_streams", None)
            if stop is not None:  # the router's event streams end now: uvicorn waits for open responses
                stop()

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = Server(config)
    loop = asyncio.get_running_loop()
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    try:
        for sig in signals:
            loop.add_signal_handler(sig, server.handle_exit, sig, None)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals here
        signals = ()
    try:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"knflow: serving on http://{host}:{port}", file=sys.stderr, flush=True)
        if ready is not None:
            ready.set()
        await task
    finally:
        for sig in signals:  # a second signal during the cleanup acts as usual
            loop.remove_signal_handler(sig)


def cmd_serve_function(args: argparse.Namespace) -> int:
    from functions.registry import REGISTRY
    from functions.server import create_app

    settings = Settings()
    name = args.name or settings.function
    if not name:
        raise KnflowError("knflow serve function needs a NAME (or KNFLOW_FUNCTION)")
    _load(settings.function_modules + args.functions)
    spec = REGISTRY.get(name)
    port = args.port or settings.port
    print(
        f"knflow: function '{spec.name}' on http://{args.host}:{port} (metrics at /metrics)",
        file=sys.stderr,
        flush=True,
    )
    app = create_app(
        spec, settings.max_body_bytes, logs_sink=settings.k_sink, metrics_token=_secret(settings.metrics_token)
    )
    # serve_app, not uvicorn.run: on SIGTERM the process exits by itself (uvicorn.run re-raises the signal),
    # so that what runs at exit runs (the spans batched for export are flushed: broker/tracing.py)
    eventloop.run(serve_app(app, args.host, port))
    return 0


@contextlib.asynccontextmanager
async def router_stack(
    settings: Settings,
    store_url: str,
    nats_url: str | None,
    pipeline_files: list[str],
    connect_in_background: bool = False,
    route_results: bool = True,
) -> AsyncIterator[Any]:
    """A router over the store and the broker the settings name; yields (router, catalog, stack).
    `connect_in_background` (`knflow serve router`): NATS unreachable, it yields at once and connects later."""
    from router.catalog import StorePipelines
    from router.store import open_store
    from router.loader import load, read_file

    store = open_store(store_url)
    catalog = StorePipelines(store, environment=settings.env)
    for path in pipeline_files:
        pipeline, text = load(path), read_file(path)
        await catalog.put(pipeline, None if text.lstrip().startswith("{") else text)  # a YAML file's text, as written
    if nats_url:
        from knflow.nats_stack import NatsStack

        async with NatsStack(
            nats_url,
            store,
            catalog,
            layout=_layout(settings),
            settings=settings,
            connect_in_background=connect_in_background,
            route_results=route_results,
        ) as stack:
            router = stack.router
            assert router is not None  # a NatsStack with a store has a router
            sweeper = asyncio.create_task(router.sweep_forever(settings.sweep_interval_s, settings.sweep_after_s))
            try:
                yield router, catalog, stack
            finally:
                sweeper.cancel()
        await store.close()
    elif settings.k_sink:
        from broker.http_publisher import HttpPublisher
        from router.router import build_router

        publisher = HttpPublisher(settings.k_sink)
        router = build_router(settings, store, publisher, catalog)
        await router.result_key()
        sweeper = asyncio.create_task(router.sweep_forever(settings.sweep_interval_s, settings.sweep_after_s))
        try:
            yield router, catalog, None
        finally:
            sweeper.cancel()
            await publisher.close()
            await store.close()
    else:
        from knflow.local import EmbeddedStack

        async with EmbeddedStack(store, pipelines=catalog, settings=settings) as stack:
            yield stack.router, catalog, stack


def _secret(value: Any) -> str | None:
    return None if value is None else value.get_secret_value()


def _layout(settings: Settings) -> Any:
    from broker.nats import StreamLayout

    return StreamLayout(stream=settings.stream, prefix=settings.subject_prefix)


def api_access(settings: Settings, insecure: bool, where: str) -> tuple[str | None, bool]:
    """(the bootstrap admin token, whether the API is open) for a router served at `where`."""
    from router.tokens import MIN_BOOTSTRAP_CHARS

    token = settings.admin_token or None
    if insecure:
        message = (
            f"WARNING: --insecure: the router API on {where} is open: anyone who reaches it can read runs, "
            "start and replay runs, and change pipelines and tokens. Set KNFLOW_ADMIN_TOKEN instead."
        )
        print(f"knflow: {message}", file=sys.stderr, flush=True)
        log.warning("router API open (--insecure)", where=where)
        return token, True
    if token is None:
        raise KnflowError(
            "knflow serve router needs KNFLOW_ADMIN_TOKEN, the bootstrap admin token of its API "
            "(e.g. export KNFLOW_ADMIN_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')), "
            "or --insecure to serve the API without authentication"
        )
    if len(token) < MIN_BOOTSTRAP_CHARS:
        raise KnflowError(
            f"KNFLOW_ADMIN_TOKEN has {len(token)} characters; use at least {MIN_BOOTSTRAP_CHARS} random ones"
        )
    return token, False


def router_store_url(settings: Settings, flag: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The router's run store: `--store`, else KNFLOW_STORE_URL. A deployment that still names its store in
    KNFLOW_MONGODB_URL (the builtins' database since the router and the builtins stopped sharing one) is
    refused, not served from a local SQLite file that would lose its runs with the pod."""
    if flag:
        return flag
    if "KNFLOW_STORE_URL" not in environ and environ.get("KNFLOW_MONGODB_URL"):
        raise KnflowError(
            "KNFLOW_MONGODB_URL is set but KNFLOW_STORE_URL is not: KNFLOW_MONGODB_URL is the mongodb-* builtins' "
            "database, not the router's store. Set KNFLOW_STORE_URL (or --store) to the router's store"
        )
    return settings.store


def broker_ingress_access(settings: Settings, insecure: bool, where: str) -> None:
    """A broker-ingress router serves no API, so it takes no admin token: it refuses one, and --insecure."""
    if insecure:
        raise KnflowError("--broker-ingress serves no API, so --insecure means nothing there; drop one of them")
    if settings.admin_token:
        raise KnflowError(
            "--broker-ingress serves no API and must not hold the admin token: unset KNFLOW_ADMIN_TOKEN for it "
            "(it needs only the store and KNFLOW_RESULT_KEY)"
        )
    print(
        f"knflow: broker ingress on {where}: only POST /events and POST /dead-letter; external events are taken "
        "without a token, so only the cluster's broker may reach it (cluster-local, never a public route); "
        "results and dead letters still need their knflowtoken",
        file=sys.stderr,
        flush=True,
    )


def cmd_serve_router(args: argparse.Namespace) -> int:
    settings = Settings()
    settings.env = args.env or settings.env
    store_url = router_store_url(settings, args.store)
    where = f"http://{args.host}:{args.port or settings.port}"
    admin_token: str | None = None
    open_api = False
    if args.broker_ingress:
        broker_ingress_access(settings, args.insecure, where)
    else:
        admin_token, open_api = api_access(settings, args.insecure, where)
    _load(settings.function_modules + args.functions)
    if args.no_results and not (args.nats or settings.nats_url):
        raise KnflowError(
            "--no-results needs --nats URL (or KNFLOW_NATS_URL): only on NATS do routers share the results' stream"
        )

    async def main() -> None:
        from router.service import create_app

        nats_url = args.nats or settings.nats_url
        # NATS unreachable: the router serves anyway (/healthz 503 with the reason) and connects in the background
        files = settings.pipeline_files + args.pipelines
        async with router_stack(
            settings, store_url, nats_url, files, connect_in_background=True, route_results=not args.no_results
        ) as (
            router,
            catalog,
            stack,
        ):
            await serve_app(
                create_app(
                    router,
                    catalog,
                    settings.max_body_bytes,
                    None if args.broker_ingress else settings.webhook_secret,
                    admin_token=admin_token,
                    open_api=open_api,
                    broker_ingress=args.broker_ingress,
                    metrics_token=_secret(settings.metrics_token),
                    not_ready=getattr(stack, "not_ready", None),  # a NatsStack's: why NATS is not usable yet
                ),
                args.host,
                args.port or settings.port,
            )

    eventloop.run(main())
    return 0


def cmd_serve_dispatcher(args: argparse.Namespace) -> int:
    """Deliver invokes of the named functions (NAME or NAME=URL) from NATS; dead letters to a router URL."""
    settings = Settings()
    _load(settings.function_modules + args.functions)
    nats_url = args.nats or settings.nats_url
    if not nats_url:
        raise KnflowError("knflow serve dispatcher needs --nats URL (or KNFLOW_NATS_URL)")

    async def main() -> None:
        from broker import metrics
        from knflow.nats_stack import NatsStack

        # no store and no router: a dispatcher keeps no runs (results go back on the stream to the routers)
        async with NatsStack(nats_url, layout=_layout(settings), route_results=False) as stack:
            port = settings.metrics_port if args.metrics_port is None else args.metrics_port
            runner, port = await metrics.serve(args.metrics_host, port, _secret(settings.metrics_token))
            for entry in args.function:
                name, _, url = entry.partition("=")
                await stack.serve_function(name, url or None, dead_letter=args.dead_letter)
            print(
                f"knflow: dispatching {', '.join(args.function)} from {mask_url(nats_url)}; "
                f"metrics on http://{args.metrics_host}:{port}/metrics",
                file=sys.stderr,
                flush=True,
            )
            await _until_stopped()
            await runner.cleanup()

    eventloop.run(main())
    return 0


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def add_commands(sub: Any, functions_arg: Any) -> None:
    serve = sub.add_parser("serve", help="run a function service, the router, or a dispatcher")
    kinds = serve.add_subparsers(dest="kind", required=True)

    p = kinds.add_parser("function", help="serve one function on Knative's HTTP contract")
    p.add_argument("name", nargs="?", help="the function (default: KNFLOW_FUNCTION)")
    p.add_argument("--port", type=int, help="default: PORT, else 8080")
    p.add_argument("--host", default="0.0.0.0")
    functions_arg(p)
    p.set_defaults(fn=cmd_serve_function)

    p = kinds.add_parser("router", help="serve the router: events, webhooks, dead letters, runs, pipelines")
    p.add_argument("--store", help="run store URL (default: KNFLOW_STORE_URL, else sqlite:///knflow.db)")
    p.add_argument("--nats", help="NATS URL (default: KNFLOW_NATS_URL); without it and K_SINK, an in-memory broker")
    p.add_argument("--pipelines", nargs="*", default=[], metavar="FILE", help="pipeline files to load at start")
    p.add_argument("--env", type=environments.env_arg, metavar="NAME", help=environments.ENV_HELP)
    p.add_argument("--port", type=int)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve the API without authentication (a warning on every start); default: KNFLOW_ADMIN_TOKEN is required",
    )
    p.add_argument(
        "--broker-ingress",
        action="store_true",
        help="serve only POST /events and POST /dead-letter for Knative's broker: external events without a token "
        "(the network is the trust boundary: cluster-local only), results by their knflowtoken; no API, no "
        "KNFLOW_ADMIN_TOKEN",
    )
    p.add_argument(
        "--no-results",
        action="store_true",
        help="with --nats: take no node results from the stream (the store's other routers apply them); webhooks, "
        "the API and synchronous webhooks' answers (read from the store) still work",
    )
    functions_arg(p)
    p.set_defaults(fn=cmd_serve_router)

    p = kinds.add_parser("dispatcher", help="deliver functions' invokes from NATS (in-process, or NAME=URL)")
    p.add_argument("--nats", help="NATS URL (default: KNFLOW_NATS_URL)")
    p.add_argument("--function", action="append", default=[], metavar="NAME[=URL]", required=True)
    p.add_argument("--dead-letter", metavar="URL", required=True, help="the router's /dead-letter URL")
    p.add_argument(
        "--metrics-port", type=int, help="GET /metrics here (default: KNFLOW_METRICS_PORT, else a free port)"
    )
    p.add_argument("--metrics-host", default="0.0.0.0")
    functions_arg(p)
    p.set_defaults(fn=cmd_serve_dispatcher)

"""A local STAND-IN for Knative's broker, for the bench's `knative` mode: not Knative, and not for production.

    python -m bench.knative_standin --nats URL --port PORT --router URL --function NAME=URL ... \
        --end PIPELINE:NODE ... --report SUBJECT

What a Knative broker does between knflow's parts, done with knflow's own dispatchers on JetStream:
- ingress: `POST /` (any path) takes a CloudEvent (binary or structured mode), stores it in the stream and
  answers 202, as the broker's ingress does for the router's K_SINK;
- a trigger per function: the invokes are delivered over HTTP in binary mode to the function's service,
  whose HTTP response is its reply, which goes back into the stream (the broker republishes it);
- a trigger for results: node results are POSTed to the router's `/events`, dead letters to its
  `/dead-letter`.

For the bench to see a run end without polling the router (which would add to the router's CPU, the
figure this mode measures): once the router accepted (202) the result of a pipeline's last node (`--end`),
or any failed node's, the stand-in publishes `RUN STATUS` on the core NATS subject `--report` (outside
the stream). Run events are not used: whether the router sends them is its own choice.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aiohttp
from aiohttp import web
from cloudevents.core.v1.event import CloudEvent

from broker import codec, events
from broker import extensions as ext
from broker.delivery import DeliveryOutcome
from broker.errors import KnflowError
from broker.nats import StreamLayout
from broker.nats_dispatcher import Dispatcher
from broker.sinks import HttpTarget
from knflow.nats_stack import NatsStack
from bench.pipelines import FUNCTIONS_MODULE

STAND_IN = "knative broker stand-in"
TIMEOUT_S = 30.0


class Reporting:
    """A trigger's subscriber: POST to the router, then, if it was accepted and ends a run, say so on NATS."""

    def __init__(self, target: HttpTarget, nc: object, subject: str, ends: set[tuple[str, str]]) -> None:
        self.target = target
        self.nc = nc
        self.subject = subject
        self.ends = ends

    async def __call__(self, event: CloudEvent) -> DeliveryOutcome:
        outcome = await self.target.deliver(event)
        if outcome.ok:
            failed = event.get_type() != events.NODE_SUCCEEDED
            key = (str(event.get_extension(ext.PIPELINE)), str(event.get_extension(ext.NODE)))
            if failed or key in self.ends:
                run = event.get_extension(ext.RUN)
                await self.nc.publish(self.subject, f"{run} {'failed' if failed else 'succeeded'}".encode())  # type: ignore[attr-defined]
        return outcome


async def main(args: argparse.Namespace) -> None:
    from functions.registry import load_module

    load_module(FUNCTIONS_MODULE)  # each trigger's retries and timeout, as `knflow serve dispatcher` reads them
    layout = StreamLayout(stream=args.stream, prefix=args.prefix)
    ends = {tuple(e.split(":", 1)) for e in args.end}
    async with NatsStack(args.nats, layout=layout, route_results=False) as stack, aiohttp.ClientSession() as session:
        publisher = stack.publisher
        router = args.router.rstrip("/")

        async def ingress(request: web.Request) -> web.Response:
            try:
                event = codec.decode(request.headers, await request.read())
            except KnflowError as err:
                return web.Response(status=400, text=str(err))
            try:
                await publisher.publish(event)
            except KnflowError as err:  # not stored: the sender retries, as with Knative's ingress
                return web.Response(status=503, text=str(err))
            return web.Response(status=202)

        dead_letters = Reporting(HttpTarget(f"{router}/dead-letter", session, TIMEOUT_S), stack.nc, args.report, ends)
        for entry in args.function:
            name, _, url = entry.partition("=")
            await stack.serve_function(name, url, dead_letter=dead_letters)
        results = Dispatcher(
            stack.nc,
            name="standin-router-results",
            filter_subject=f"{layout.prefix}.result.>",
            subscriber=Reporting(HttpTarget(f"{router}/events", session, TIMEOUT_S), stack.nc, args.report, ends),
            layout=layout,
            timeout_s=TIMEOUT_S,
            publisher=publisher,
            max_in_flight=256,
        )
        await results.start()
        stack.dispatchers.append(results)
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/{tail:.*}", ingress)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print(f"{STAND_IN}: ingress on http://127.0.0.1:{args.port}/, results to {router}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.knative_standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--router", required=True, help="the router's base URL (its /events and /dead-letter)")
    parser.add_argument("--function", action="append", default=[], metavar="NAME=URL", required=True)
    parser.add_argument("--end", action="append", default=[], metavar="PIPELINE:NODE")
    parser.add_argument("--report", required=True, help="core NATS subject for the ends of runs")
    from knflow import eventloop
    from knflow.cli import configure_logging

    configure_logging(0)
    eventloop.run(main(parser.parse_args()))

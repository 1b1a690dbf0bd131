"""`knflow logs RUN [NODE] [--attempt N] [--follow]`: the node log lines of a run, from a store or a router.

Lines print on stdout, oldest first, one a line (knflow.progress.line_text); a try that dropped lines past its
bounds is noted on stderr. `--follow` keeps asking for new lines until the run has ended, then reads what is
left and exits: 0 if the run succeeded, 1 if not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import deque
from typing import TYPE_CHECKING, Any

from broker.errors import KnflowError
from knflow.client import RouterClient, token_arg
from knflow.progress import line_text
from knflow.settings import DEFAULT_STORE

if TYPE_CHECKING:
    from router.node_logs import LogLine, LogPage
    from router.store.base import RunStore

PAGE_LINES = 1000  # lines per request (the API's most)


class StoreLogs:
    """A run's lines and status read from a store directly."""

    def __init__(self, store: RunStore, where: str) -> None:
        self.store = store
        self.where = where

    async def status(self, run_id: str) -> str:
        run = await self.store.get_run(run_id)
        if run is None:
            raise KnflowError(f"no run '{run_id}' in {self.where}")
        return run["status"]

    async def page(self, run_id: str, node: str | None, attempt: int | None, after: int) -> LogPage:
        from router.node_logs import page

        lines, truncated = await self.store.read_logs(run_id, node, attempt, after, PAGE_LINES)
        return page(run_id, lines, truncated, after)

    async def close(self) -> None:
        await self.store.close()


class RouterLogs:
    """The same through a router's API (`GET /runs/{id}`, `GET /runs/{id}/logs`)."""

    def __init__(self, client: RouterClient) -> None:
        self.client = client

    async def status(self, run_id: str) -> str:
        return self.client.get_run(run_id)["status"]

    async def page(self, run_id: str, node: str | None, attempt: int | None, after: int) -> LogPage:
        return self.client.run_logs(run_id, node, attempt, after, PAGE_LINES)

    async def close(self) -> None:
        self.client.http.close()


async def tail(
    source: StoreLogs | RouterLogs, run_id: str, node: str, attempt: int, count: int
) -> tuple[list[LogLine], bool]:
    """The last `count` lines of one try, and whether it wrote (or dropped) earlier ones."""
    last: deque[LogLine] = deque(maxlen=count)
    seen, after, dropped = 0, 0, 0
    while True:
        got = await source.page(run_id, node, attempt, after)
        last.extend(got["lines"])
        seen += len(got["lines"])
        dropped = sum(got["truncated"].values())
        if len(got["lines"]) < PAGE_LINES:
            return list(last), seen > len(last) or dropped > 0
        after = got["next_after"]


async def show(source: StoreLogs | RouterLogs, args: argparse.Namespace) -> int:
    status = await source.status(args.run_id)  # an unknown run is an error, not an empty log
    after, noted = 0, set()
    ended = not args.follow or status != "running"
    while True:
        got = await source.page(args.run_id, args.node, args.attempt, after)
        for key, dropped in got["truncated"].items():
            if key not in noted:
                noted.add(key)
                node, _, attempt = key.rpartition(":")
                print(
                    f"knflow logs: {node}#{attempt} dropped its {dropped:,} oldest line(s) "
                    "(a try keeps its last 1,000 lines or 256 KiB)",
                    file=sys.stderr,
                )
        for line in got["lines"]:
            print(line_text(line))
        after = got["next_after"]
        if len(got["lines"]) == PAGE_LINES:
            continue  # more to read now
        if ended:
            break
        sys.stdout.flush()
        await asyncio.sleep(args.interval_s)
        status = await source.status(args.run_id)
        ended = status != "running"  # read once more, then stop: lines are stored before the result that ends it
    if not args.follow:
        return 0
    print(f"run {args.run_id} {status}", file=sys.stderr)
    return 0 if status == "succeeded" else 1


def cmd_logs(args: argparse.Namespace) -> int:
    if args.router and args.store:
        raise KnflowError("give --store or --router, not both")
    if args.attempt is not None and args.attempt < 1:
        raise KnflowError(f"--attempt must be 1 or more, got {args.attempt}")
    if args.interval_s <= 0:
        raise KnflowError(f"--interval-s must be more than 0, got {args.interval_s:g}")

    async def main() -> int:
        source: StoreLogs | RouterLogs
        if args.router:
            source = RouterLogs(RouterClient(args.router, args.token))
        else:
            from router.store import open_store

            url = args.store or DEFAULT_STORE
            source = StoreLogs(open_store(url), url)
        try:
            return await show(source, args)
        finally:
            await source.close()

    return asyncio.run(main())


def add_command(sub: Any) -> None:
    p = sub.add_parser("logs", help="print the node log lines of a run (of a router, or in a store)")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("node", metavar="NODE", nargs="?", help="one node (with its items), or one item: gen[3]")
    p.add_argument("--attempt", type=int, help="only this attempt")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until the run ends")
    p.add_argument("--router", help="a router's URL; without it, read --store")
    p.add_argument("--store", help=f"run store URL (default {DEFAULT_STORE})")
    p.add_argument("--interval-s", type=float, default=0.5, help="--follow: seconds between polls")
    token_arg(p)
    p.set_defaults(fn=cmd_logs)

"""Commands that talk to a router over HTTP, or read a store directly: `knflow runs`, `knflow publish`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broker.errors import KnflowError
from knflow.settings import DEFAULT_STORE

if TYPE_CHECKING:
    from router.node_logs import LogPage
    from router.runs import RunRecord

DEFAULT_ROUTER = "http://127.0.0.1:8080"


class RouterClient:
    """A router's API over HTTP, sending `token` (default: KNFLOW_TOKEN) as `Authorization: Bearer`."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.token = token or os.environ.get("KNFLOW_TOKEN") or None
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(timeout=timeout_s, headers=headers)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            resp = self.http.request(method, self.url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise KnflowError(f"cannot reach the router at {self.url}: {exc}") from None
        body = (
            resp.json()
            if resp.content and resp.headers.get("content-type", "").startswith("application/json")
            else resp.text
        )
        if resp.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else body
            if resp.status_code == 401 and not self.token:
                message = f"{message} (give --token TOKEN or set KNFLOW_TOKEN)"
            raise KnflowError(f"{method} {self.url}{path} answered {resp.status_code}: {message}")
        return body

    def list_runs(self, pipeline: str | None, status: str | None, limit: int) -> list[RunRecord]:
        params = {k: v for k, v in {"pipeline": pipeline, "status": status, "limit": limit}.items() if v}
        return self.request("GET", "/runs", params=params)

    def get_run(self, run_id: str) -> RunRecord:
        return self.request("GET", f"/runs/{run_id}")

    def run_logs(self, run_id: str, node: str | None, attempt: int | None, after: int, limit: int) -> LogPage:
        params = {k: v for k, v in {"node": node, "attempt": attempt, "after": after, "limit": limit}.items() if v}
        return self.request("GET", f"/runs/{run_id}/logs", params=params)


def token_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", help="the bearer token sent to --router (default: KNFLOW_TOKEN)")


def cmd_runs(args: argparse.Namespace) -> int:
    if args.action == "prune":
        return prune(args)
    if args.router:
        client = RouterClient(args.router, args.token)
        return _runs(args, client.list_runs, client.get_run)
    import asyncio

    from router.runs import record
    from router.store import open_store

    # one event loop for the whole command, so that `watch` reads the store again on every poll
    with asyncio.Runner() as loop:
        store = loop.run(_opened(open_store, args.store))
        try:

            def get(run_id: str) -> RunRecord:
                run = loop.run(store.get_run(run_id))
                if run is None:
                    raise KnflowError(f"no run '{run_id}' in {args.store}")
                return record(run)

            def listed(pipeline: str | None, status: str | None, limit: int) -> list[RunRecord]:
                return [record(r) for r in loop.run(store.list_runs(pipeline, status, limit))]

            return _runs(args, listed, get)
        finally:
            loop.run(store.close())


def prune(args: argparse.Namespace) -> int:
    """`knflow runs prune --older-than 7d [--dry-run]`: delete old runs of a store, with their node logs,
    items and blobs (router/retention.py)."""
    import asyncio

    from broker.redact import mask_url
    from functions.blobs import default_store
    from router.replay import parse_duration_s
    from router.router import iso_before, prune_runs
    from router.store import open_store

    if args.router:
        raise KnflowError("knflow runs prune deletes from a store: give --store URL, not --router")
    if not args.older_than:
        raise KnflowError("knflow runs prune needs --older-than DURATION, such as --older-than 7d")
    seconds = parse_duration_s(args.older_than)
    cutoff = iso_before(seconds)

    async def go() -> list[Any]:
        store = open_store(args.store)
        try:
            return await prune_runs(store, default_store(), seconds, seconds, args.dry_run)
        finally:
            await store.close()

    runs = asyncio.run(go())
    what = f"created before {cutoff} (older than {args.older_than}) in {mask_url(args.store)}"
    if not runs:
        print(f"no runs {what}")
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(runs)} run{'s' if len(runs) != 1 else ''} {what}, with their node logs, items and blobs:")
    for run in runs:
        print(f"  {run['id']}  {run['status']:<10} {run['pipeline']:<24} {run['created_at']}")
    if args.dry_run:
        print("nothing was deleted (--dry-run)")
    return 0


async def _opened(open_store: Callable[[str], Any], url: str) -> Any:
    """The store at `url`, opened inside the running loop (its client binds to that loop)."""
    return open_store(url)


def _runs(
    args: argparse.Namespace,
    list_runs: Callable[[str | None, str | None, int], list[RunRecord]],
    get_run: Callable[[str], RunRecord],
) -> int:
    if args.action == "list":
        for run in list_runs(args.pipeline, args.status, args.limit):
            print(f"{run['id']}  {run['status']:<10} {run['pipeline']:<24} {run['created_at']}")
        return 0
    if not args.run_id:
        raise KnflowError(f"knflow runs {args.action} needs a RUN_ID")
    if args.action == "show":
        print(json.dumps(get_run(args.run_id), indent=2, ensure_ascii=False))
        return 0
    return watch(get_run, args.run_id, args.interval_s)


def watch(get_run: Callable[[str], RunRecord], run_id: str, interval_s: float) -> int:
    """Follow a run until it ends, one line per node change; exit 0 if it succeeded."""
    from knflow.progress import Progress
    from router.runs import Transition

    run = get_run(run_id)
    progress = Progress(list(run["nodes"]), out=sys.stderr)
    seen: dict[str, tuple] = {}
    while True:
        changed = []
        for node, state in run["nodes"].items():
            key = (state["status"], state["attempt"])
            if seen.get(node) != key and state["status"] != "pending":
                seen[node] = key
                changed.append(Transition(node, frozenset(), {}))
        progress(run, changed)
        if run["status"] != "running":
            print(f"run {run_id} {run['status']}")
            return 0 if run["status"] == "succeeded" else 1
        time.sleep(interval_s)
        run = get_run(run_id)


def cmd_publish(args: argparse.Namespace) -> int:
    """Send one CloudEvent to a router's /events (or any CloudEvents endpoint)."""
    from broker import codec, events

    try:
        data = json.loads(args.data) if args.data is not None else {}
    except json.JSONDecodeError as exc:
        raise KnflowError(f"--data is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    attrs = {
        "type": args.type,
        "source": args.source,
        "id": args.id or uuid.uuid4().hex,
        "datacontenttype": events.JSON,
    }
    if args.subject:
        attrs["subject"] = args.subject
    event = events.make_event(attrs, data)
    headers, body = codec.encode_structured(event) if args.structured else codec.encode_binary(event)
    to = args.to or DEFAULT_ROUTER.rstrip("/") + "/events"
    client = RouterClient(to, args.token)
    answer = client.request("POST", "", content=body, headers=headers)
    print(json.dumps(answer) if not isinstance(answer, str) else answer)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """Re-deliver the external events JetStream kept for a window through the triggers again."""
    client = RouterClient(args.router, args.token)
    body = {"since": args.since, **({"type": args.type} if args.type else {})}
    report = client.request("POST", "/events/replay", json=body)["events"]
    for row in report:
        print(f"{row['event']}  {row['type']}  -> {', '.join(row['runs']) or 'no pipeline'}")
    print(f"{len(report)} event(s) replayed, {sum(len(r['runs']) for r in report)} run(s) started")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("runs", help="list, show, watch or prune runs (of a router, or in a store)")
    p.add_argument("action", choices=["list", "show", "watch", "prune"], nargs="?", default="list")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--router", help=f"a router's URL, e.g. {DEFAULT_ROUTER}; without it, read --store")
    p.add_argument("--store", default=DEFAULT_STORE)
    p.add_argument("--pipeline")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--interval-s", type=float, default=0.25, help="watch: seconds between polls")
    p.add_argument("--older-than", metavar="DURATION", help="prune: runs created longer ago than this (7d, 12h)")
    p.add_argument("--dry-run", action="store_true", help="prune: list what would be deleted, delete nothing")
    token_arg(p)
    p.set_defaults(fn=cmd_runs)

    p = sub.add_parser("publish", help="send a CloudEvent to a router or any CloudEvents endpoint")
    p.add_argument("type", metavar="TYPE")
    p.add_argument("--data", help="JSON data")
    p.add_argument("--source", default="/knflow/cli")
    p.add_argument("--subject")
    p.add_argument("--id", help="event id (default: random)")
    p.add_argument("--to", metavar="URL", help=f"default {DEFAULT_ROUTER}/events")
    p.add_argument("--structured", action="store_true", help="structured mode instead of binary")
    token_arg(p)
    p.set_defaults(fn=cmd_publish)

    p = sub.add_parser("events", help="event replay: deliver kept external events through the triggers again")
    p.add_argument("action", choices=["replay"])
    p.add_argument("--since", required=True, help="the window, e.g. 30m, 2h, 7d")
    p.add_argument("--type", help="only events of this CloudEvent type")
    p.add_argument("--router", default=DEFAULT_ROUTER)
    token_arg(p)
    p.set_defaults(fn=cmd_events)

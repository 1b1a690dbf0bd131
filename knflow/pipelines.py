"""`knflow pipelines list | pause NAME | resume NAME`: the stored pipelines and their status, through a router
(`--router URL`, with an `operate` token in `--token` or KNFLOW_TOKEN to pause or resume) or in its store
directly (`--store URL`). A paused pipeline's webhooks answer 409 and its cron ticks are skipped."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from broker.errors import KnflowError
from knflow.settings import DEFAULT_STORE


def cmd_pipelines(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        raise KnflowError(f"knflow pipelines {args.action} needs the pipeline's NAME")
    result = _via_router(args) if args.router else asyncio.run(_in_store(args))
    if args.action == "list":
        for doc in result:
            print(_row(doc))
        return 0
    print(f"pipeline '{result['pipeline']}' is {result['status']}")
    return 0


def _row(doc: dict[str, Any]) -> str:
    raw = doc.get("triggers") or [doc.get("trigger") or {"type": "manual"}]
    triggers = ",".join(str(t.get("type", "manual")) for t in raw if isinstance(t, dict))
    name = doc.get("metadata", {}).get("name", "?")
    return f"{name:<32} {doc.get('status', 'active'):<8} {triggers:<20} {len(doc.get('nodes') or [])} nodes"


def _via_router(args: argparse.Namespace) -> Any:
    from knflow.client import RouterClient

    client = RouterClient(args.router, args.token)
    if args.action == "list":
        return client.request("GET", "/pipelines")
    return client.request("POST", f"/pipelines/{args.name}/{args.action}")


async def _in_store(args: argparse.Namespace) -> Any:
    from router.catalog import StorePipelines
    from router.store import open_store

    store = open_store(args.store)
    try:
        if args.action == "list":
            return sorted(await store.list_pipelines(), key=lambda d: str(d.get("metadata", {}).get("name")))
        status = "paused" if args.action == "pause" else "active"
        p = await StorePipelines(store).set_status(args.name, status)
        if p is None:
            raise KnflowError(f"no pipeline named '{args.name}' in {args.store}")
        return {"pipeline": p.name, "status": p.status}
    finally:
        await store.close()


def add_command(sub: Any) -> None:
    from knflow.client import token_arg

    p = sub.add_parser("pipelines", help="list the stored pipelines, pause or resume one")
    p.add_argument("action", choices=["list", "pause", "resume"])
    p.add_argument("name", nargs="?", metavar="NAME", help="pause, resume: the pipeline")
    p.add_argument("--router", help="a router's URL (pause and resume need an operate token); without it, --store")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"the router's run store URL (default {DEFAULT_STORE})")
    token_arg(p)
    p.set_defaults(fn=cmd_pipelines)

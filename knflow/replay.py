"""`knflow replay` and `knflow cancel`: against a router (`--router URL`), or on the embedded default
(`--store URL`, the store `knflow run` used), where a redrive is carried to its end like `knflow run`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from broker.errors import KnflowError
from knflow.settings import DEFAULT_STORE, Settings

if TYPE_CHECKING:
    from knflow.client import RouterClient
    from router.catalog import StorePipelines
    from router.runs import RunDoc


def cmd_replay(args: argparse.Namespace) -> int:
    bulk = args.pipeline or args.status or args.since
    if bool(args.run_id) == bool(bulk):
        raise KnflowError("knflow replay takes a RUN_ID, or --pipeline/--status/--since for many runs (not both)")
    if args.router:
        from knflow.client import RouterClient, watch

        client = RouterClient(args.router, args.token)
        if bulk:
            body = {
                "pipeline": args.pipeline,
                "status": args.status or "failed",
                "since": args.since,
                "new_run": args.new_run,
                "by": args.by,
            }
            return _report(
                client.request("POST", "/replay", json={k: v for k, v in body.items() if v is not None})["runs"]
            )
        run = client.request(
            "POST", f"/runs/{args.run_id}/replay", json={"from": args.from_node, "new_run": args.new_run, "by": args.by}
        )
        if args.no_wait:
            print(json.dumps(run, indent=2) if args.json else f"run {run['id']} {run['status']}")
            return 0
        code = watch(client.get_run, run["id"], 0.25) if not args.json else _wait_json(client, run["id"])
        return code
    return asyncio.run(_embedded(args, bool(bulk)))


def _wait_json(client: RouterClient, run_id: str) -> int:
    import time

    while (run := client.get_run(run_id))["status"] == "running":
        time.sleep(0.25)
    print(json.dumps(run, indent=2, ensure_ascii=False))
    return 0 if run["status"] == "succeeded" else 1


def _report(rows: list[dict[str, Any]]) -> int:
    for row in rows:
        if "error" in row:
            print(f"{row['run']}  not replayed: {row['error']}")
        else:
            print(f"{row['run']}  -> {row['replay']} {row['status']}")
    print(f"{len(rows)} run(s) matched, {sum('error' not in r for r in rows)} replayed")
    return 1 if any("error" in r for r in rows) else 0


async def _embedded(args: argparse.Namespace, bulk: bool) -> int:
    from functions.registry import load_module
    from knflow.local import EmbeddedStack
    from knflow.progress import Progress, print_result
    from router.catalog import StorePipelines
    from router.replay import parse_duration_s
    from router.runs import SUCCEEDED, record
    from router.store import open_store

    for ref in args.functions:
        load_module(ref)
    store = open_store(args.store)
    catalog = StorePipelines(store, environment=Settings().env)  # a new run (--new-run) takes KNFLOW_ENV's variables
    if bulk:
        async with EmbeddedStack(store, pipelines=catalog) as stack:
            await _load_functions(catalog, await stack.store.list_runs(args.pipeline, args.status or "failed", 1000))
            report = await stack.router.replay_many(
                args.pipeline,
                args.status or "failed",
                parse_duration_s(args.since) if args.since else None,
                args.new_run,
                args.by,
            )
            for row in report:
                if "replay" in row:
                    row["status"] = (await stack.wait(row["replay"]))["status"]
        return _report(report)
    old = await store.get_run(args.run_id)
    if old is None:
        await store.close()
        raise KnflowError(f"no run '{args.run_id}' in {args.store}")
    await _load_functions(catalog, [old])
    p = await catalog.get(old["pipeline"])
    if p is None:
        await store.close()
        raise KnflowError(f"the store {args.store} has no pipeline '{old['pipeline']}' for run '{args.run_id}'")
    async with EmbeddedStack(store, pipelines=catalog, observer=Progress(list(p.order), out=sys.stderr)) as stack:
        run_id = await stack.redrive(args.run_id, args.from_node, args.new_run, args.by)
        rec = record(await stack.wait(run_id))
    if args.json:
        print(json.dumps(rec, indent=2, ensure_ascii=False))
    else:
        print_result(rec)
    return 0 if rec["status"] == SUCCEEDED else 1


async def _load_functions(catalog: StorePipelines, runs: list[RunDoc]) -> None:
    """Check that this process has the functions the runs' pipelines use. Stored data never names code: the
    modules a stored pipeline lists under `functions:` are NOT imported (the store may have been written by
    anyone who could write to it); only what this command's own `--functions` names was."""
    from functions.registry import REGISTRY

    for name in sorted({r["pipeline"] for r in runs}):
        p = await catalog.get(name)
        if p is None:
            continue
        used = {n.function for n in p.nodes.values()} | ({p.on_failure} if p.on_failure else set())
        missing = sorted(f for f in used if REGISTRY.find(f) is None)
        if missing:
            listed = (
                f" (the stored pipeline lists {', '.join(p.functions)}; they are not imported)" if p.functions else ""
            )
            raise KnflowError(
                f"pipeline '{name}' uses function(s) {', '.join(missing)} that no module given with --functions "
                f"defines{listed}: pass --functions MODULE for each module that defines them"
            )


def cmd_cancel(args: argparse.Namespace) -> int:
    from knflow.client import RouterClient

    run = RouterClient(args.router, args.token).request("POST", f"/runs/{args.run_id}/cancel", json={"by": args.by})
    print(f"run {run['id']} {run['status']}")
    return 0


def add_commands(sub: Any, functions_arg: Any) -> None:
    from knflow.client import token_arg

    p = sub.add_parser("replay", help="redrive a failed run in place, re-run it, or replay many")
    p.add_argument("run_id", nargs="?", metavar="RUN_ID")
    p.add_argument("--from", dest="from_node", metavar="NODE", help="also re-run NODE and everything downstream of it")
    p.add_argument(
        "--new-run", action="store_true", help="a new run from the stored trigger event (replay_of links it)"
    )
    p.add_argument("--pipeline", help="bulk: runs of this pipeline")
    p.add_argument("--status", help="bulk: runs in this status (default failed)")
    p.add_argument("--since", help="bulk: runs created in this window, e.g. 2h, 30m, 7d")
    p.add_argument("--by", help="who replays, recorded on the run (--store only: a router records the token's name)")
    p.add_argument("--router", help="a router's URL; without it, the embedded default on --store")
    token_arg(p)
    p.add_argument("--store", default=DEFAULT_STORE)
    p.add_argument("--json", action="store_true", help="print the run record as JSON")
    p.add_argument("--no-wait", action="store_true", help="with --router: do not wait for the run to end")
    functions_arg(p)
    p.set_defaults(fn=cmd_replay)

    p = sub.add_parser("cancel", help="cancel a run on a router: nothing new is scheduled")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--router", required=True)
    p.add_argument("--by", help="who cancels (an open router only: a router with tokens records the token's name)")
    token_arg(p)
    p.set_defaults(fn=cmd_cancel)

"""`knflow token create|list|revoke`: the router's API tokens, through a router (`--router URL`, with an
admin token in `--token` or KNFLOW_TOKEN) or in its store directly (`--store URL`).

A new token is printed once, alone on stdout (so that `TOKEN=$(knflow token create ...)` keeps it); the
store keeps only its hash."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from broker.errors import KnflowError
from knflow.settings import DEFAULT_STORE


def cmd_token(args: argparse.Namespace) -> int:
    if args.action == "create":
        if not args.name or not args.scope:
            raise KnflowError("knflow token create needs --name NAME and --scope read|run|operate|admin")
        created = _via_router(args) if args.router else asyncio.run(_in_store(args))
        print(created["token"])
        print(
            f"token '{created['name']}' (scope {created['scope']}) created; it is shown only this once",
            file=sys.stderr,
        )
        return 0
    if args.action == "list":
        rows = _via_router(args) if args.router else asyncio.run(_in_store(args))
        for t in rows:
            state = f"revoked {t['revoked_at']}" if t["revoked"] else "active"
            print(f"{t['name']:<24} {t['scope']:<8} {t['created_at']}  {state}")
        return 0
    if not args.name:
        raise KnflowError("knflow token revoke needs a NAME")
    _via_router(args) if args.router else asyncio.run(_in_store(args))
    print(f"token '{args.name}' revoked")
    return 0


def _via_router(args: argparse.Namespace) -> Any:
    from knflow.client import RouterClient

    client = RouterClient(args.router, args.token)
    if args.action == "create":
        return client.request("POST", "/tokens", json={"name": args.name, "scope": args.scope})
    if args.action == "list":
        return client.request("GET", "/tokens")
    return client.request("DELETE", f"/tokens/{args.name}")


async def _in_store(args: argparse.Namespace) -> Any:
    from broker.events import now_iso
    from router.store import open_store
    from router.tokens import new_record, view

    store = open_store(args.store)
    try:
        if args.action == "create":
            token, record = new_record(args.name, args.scope, now_iso())
            await store.put_token(record)
            return {"name": record["name"], "scope": record["scope"], "token": token}
        if args.action == "list":
            return [view(t) for t in await store.list_tokens()]
        if not await store.revoke_token(args.name, now_iso()):
            raise KnflowError(f"no token named '{args.name}' in {args.store}")
        return None
    finally:
        await store.close()


def add_command(sub: Any) -> None:
    from knflow.client import token_arg
    from router.tokens import SCOPES

    p = sub.add_parser("token", help="create, list or revoke the router's API tokens")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("name", nargs="?", metavar="NAME", help="revoke: the token to revoke")
    p.add_argument("--name", dest="name_opt", metavar="NAME", help="create: the token's name (shown in run history)")
    p.add_argument("--scope", choices=SCOPES, help="create: read < run < operate < admin, each holding the ones before")
    p.add_argument("--router", help="a router's URL (needs an admin token); without it, --store directly")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"the router's run store URL (default {DEFAULT_STORE})")
    token_arg(p)
    p.set_defaults(fn=_with_name)


def _with_name(args: argparse.Namespace) -> int:
    if args.name and args.name_opt and args.name != args.name_opt:
        raise KnflowError(f"two names given: '{args.name}' and --name '{args.name_opt}'")
    args.name = args.name or args.name_opt
    return cmd_token(args)

"""The `knflow` command line. Each command loads only what it uses.

Exit codes: 0 success; 1 a run failed or a pipeline is invalid; 2 a usage mistake.
User mistakes print a message naming the file, node or field, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

from broker import tracing
from broker.errors import KnflowError
from broker.redact import redact
from knflow import eventloop
from knflow.settings import DEFAULT_STORE, Settings, check_environment
from router import environments


def redact_log_values(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: URL passwords masked in every string a log line carries (broker.redact)."""
    for key, value in event.items():
        if isinstance(value, str) and "://" in value:
            event[key] = redact(value)
    return event


class _Stderr:
    """Whatever `sys.stderr` is when a line is written (not the stream it was at configure time, which a
    caller such as a test harness may have closed since)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(verbose: int, json_logs: bool = False) -> None:
    level = logging.WARNING - 10 * verbose
    renderer = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            redact_log_values,
            *([tracing.add_trace_ids] if tracing.ON else []),  # trace_id and span_id; off, not even a call
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]  # write and flush: all it uses
        cache_logger_on_first_use=False,
    )


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KnflowError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _data(args: argparse.Namespace) -> Any:
    if args.data is not None and args.input is not None:
        raise KnflowError("give --data or --input, not both")
    if args.input is not None:
        try:
            text = Path(args.input).read_text(encoding="utf-8")
        except OSError as exc:
            raise KnflowError(f"--input {args.input}: {exc.strerror}") from None
        return _json_arg(text, f"--input {args.input}")
    return _json_arg(args.data, "--data") if args.data is not None else {}


def load_pipelines(path: str, functions: list[str]) -> list:
    """A YAML pipeline file, or a Python file whose module-level @pipeline objects are taken."""
    from functions.registry import load_module
    from router.pipeline import Pipeline
    from router.loader import load

    if path.endswith(".py"):
        for ref in functions:
            load_module(ref)
        module = load_module(path)
        found = [v for v in vars(module).values() if isinstance(v, Pipeline)]
        if not found:
            raise KnflowError(f"{path} defines no @pipeline")
        return found
    return [load(path, extra_functions=functions)]


def cmd_validate(args: argparse.Namespace) -> int:
    from router.pipeline import PipelineInvalid

    failed = 0
    for path in args.files:
        try:
            for p in load_pipelines(path, args.functions):
                counts = f"{_count(len(p.nodes), 'node')}, {_count(len(p.edges), 'edge')}"
                print(f"{path}: pipeline '{p.name}' is valid ({counts})")
        except PipelineInvalid as exc:
            failed += 1
            count = len(exc.problems)
            print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        except KnflowError as exc:
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    pipelines = load_pipelines(args.file, args.functions)
    if args.name:
        pipelines = [p for p in pipelines if p.name == args.name]
        if not pipelines:
            raise KnflowError(f"{args.file} defines no pipeline named '{args.name}'")
    print("\n---\n".join(p.to_yaml() for p in pipelines), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    pipelines = load_pipelines(args.file, args.functions)
    if len(pipelines) > 1:
        names = ", ".join(p.name for p in pipelines)
        raise KnflowError(f"{args.file} defines several pipelines ({names}); export one or split the file")
    pipeline = pipelines[0].for_environment(args.env or Settings().env)
    data = _data(args)
    if args.node:
        return eventloop.run(_run_node(pipeline, args.node, data, args.json))
    return eventloop.run(_run(pipeline, data, args.store, args.json, args.id))


RUN_KEY_SOURCE = "/knflow/run"  # the trigger event's source of a `knflow run --id KEY`: its run id derives from both


async def _run(pipeline: Any, data: Any, store_url: str, as_json: bool, key: str | None = None) -> int:
    from knflow.local import EmbeddedStack
    from knflow.logs import StoreLogs, tail
    from knflow.progress import FAILED_LINES, Progress, failed_try, print_result
    from router.runs import SUCCEEDED, record
    from router.store import open_store

    progress = Progress(list(pipeline.order), out=sys.stderr)
    store = open_store(store_url)
    await store.put_pipeline(pipeline.name, pipeline.to_dict())  # so that `knflow replay` finds it
    async with EmbeddedStack(store, observer=progress) as stack:
        run_id = await stack.start(
            pipeline, data, event=_keyed_trigger(pipeline, key, data), run_id=_run_id(pipeline, key)
        )
        rec = record(await stack.wait(run_id))
        failed = None if as_json else failed_try(rec)
        if failed is not None:  # the failed try's last lines under its error (embedded: what ctx.log wrote)
            lines, earlier = await tail(StoreLogs(store, store_url), run_id, *failed, FAILED_LINES)
    if as_json:
        print(json.dumps(rec, indent=2, ensure_ascii=False))
    elif failed is not None:
        print_result(rec, lines, earlier)
    else:
        print_result(rec)
    return 0 if rec["status"] == SUCCEEDED else 1


def _run_id(pipeline: Any, key: str | None) -> str | None:
    """`--id KEY`: the run's id, derived from the pipeline and the key as a webhook's Idempotency-Key's is, so that a
    second `knflow run --id KEY` finds the first run (and prints it) instead of starting another."""
    from router.triggers import run_id_for

    if key is None:
        return None
    if not key.strip() or len(key) > 255:
        raise KnflowError(f"--id {key!r}: give a key of 1 to 255 characters (an order number, a date)")
    return run_id_for(pipeline.name, RUN_KEY_SOURCE, key)


def _keyed_trigger(pipeline: Any, key: str | None, data: Any) -> Any:
    from broker import events

    if key is None:
        return None
    attributes = {"type": "dev.knflow.manual", "source": RUN_KEY_SOURCE, "id": key, "datacontenttype": events.JSON}
    return events.make_event(attributes, data if data is not None else {})


async def _run_node(pipeline: Any, node_id: str, data: Any, as_json: bool) -> int:
    """Run one node alone, its inputs given as data (FlowHub's --task)."""
    from functions.handler import call
    from functions.registry import REGISTRY
    from functions.sdk import Context

    node = pipeline.nodes.get(node_id)
    if node is None:
        raise KnflowError(f"pipeline '{pipeline.name}' has no node '{node_id}'. Nodes: {', '.join(pipeline.nodes)}")
    spec = REGISTRY.get(node.function)
    doc = {**node.config, **data} if isinstance(data, dict) else data
    try:
        result = await call(
            spec, doc, Context(run_id="local", node_id=node_id, attempt=1, pipeline=pipeline.name, function=spec.name)
        )
    except KnflowError as exc:  # Retryable: a transient failure, reported the same way
        result = {"error": getattr(exc, "error", {"message": str(exc)})}
    print(json.dumps(result if as_json else result.get("output", result), indent=2, ensure_ascii=False))
    return 0 if "output" in result else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knflow", description="Pipelines of serverless functions, driven by events.")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log lines on stderr (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def functions_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--functions",
            action="append",
            default=[],
            metavar="MODULE_OR_PATH",
            help="a module that defines functions (repeatable)",
        )

    p = sub.add_parser("validate", help="check pipeline files; every problem is printed")
    p.add_argument("files", nargs="+", metavar="FILE")
    functions_arg(p)
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("run", help="run a pipeline on the embedded default and wait for it")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--data", help="the trigger event's data, as JSON")
    p.add_argument("--input", metavar="FILE", help="the trigger event's data, from a JSON file")
    p.add_argument("--node", metavar="ID", help="run this node alone, with --data as its input")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"run store URL (default {DEFAULT_STORE})")
    p.add_argument("--json", action="store_true", help="print the run record as JSON on stdout")
    p.add_argument("--id", metavar="KEY", help="the run's key: a second run with the same KEY returns the first run")
    p.add_argument("--env", type=environments.env_arg, metavar="NAME", help=environments.ENV_HELP)
    functions_arg(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("export", help="print a Python pipeline as YAML")
    p.add_argument("file", metavar="FILE.py")
    p.add_argument("--name", help="the pipeline to export, when the file defines several")
    functions_arg(p)
    p.set_defaults(fn=cmd_export)

    from knative.cli import add_commands as knative_commands
    from knflow import client, dev, logs, pipelines, replay, serve, tokens

    client.add_commands(sub)
    logs.add_command(sub)
    tokens.add_command(sub)
    pipelines.add_command(sub)
    knative_commands(sub, functions_arg)
    replay.add_commands(sub, functions_arg)
    serve.add_commands(sub, functions_arg)
    dev.add_command(sub, functions_arg)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    service = args.command in ("serve", "dev")  # services log a story at info level, JSON off a terminal
    configure_logging(args.verbose + (1 if service else 0), json_logs=service and not sys.stderr.isatty())
    if tracing.ON:  # OTEL_* set: spans from the start, named after this process (OTEL_SERVICE_NAME wins)
        tracing.configure(service_name(args))
    try:
        check_environment()  # a bad KNFLOW_* value stops every command here, naming the variable
        return args.fn(args)
    except KnflowError as exc:
        print(f"knflow {args.command}: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `knflow runs show ... | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def service_name(args: argparse.Namespace) -> str:
    """The tracing `service.name` of a command: knflow-router, knflow-dispatcher, knflow-function-NAME ..."""
    if args.command != "serve":
        return f"knflow-{args.command}"
    name = getattr(args, "name", None) if args.kind == "function" else None
    return f"knflow-{args.kind}" + (f"-{name}" if name else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


if __name__ == "__main__":
    sys.exit(main())

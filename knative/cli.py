"""`knflow manifests`, `knflow deploy` and `knflow status`: `add_commands(subparsers)` adds them.

    knflow manifests PIPELINE... [-o DIR] [--image IMAGE] [--namespace NS] [--profile FILE]
                                 [--functions MODULE] [--features-patch]
    knflow deploy PIPELINE... [same options] [--dry-run] [--kubeconfig FILE] [--context NAME]
    knflow status [--namespace NS] [--profile FILE] [--kubeconfig FILE] [--context NAME]

Manifests go to stdout (or one file per kind of resource in DIR); notes go to stderr. Each handler
returns an exit code and raises KnflowError subclasses for the user's mistakes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from broker.errors import KnflowError


def add_commands(
    subparsers: argparse._SubParsersAction, functions_arg: Callable[[argparse.ArgumentParser], None] | None = None
) -> None:
    def functions(p: argparse.ArgumentParser) -> None:
        if functions_arg is not None:
            functions_arg(p)
        else:
            p.add_argument(
                "--functions",
                action="append",
                default=[],
                metavar="MODULE_OR_PATH",
                help="a module that defines functions (repeatable)",
            )

    def cluster(p: argparse.ArgumentParser) -> None:
        p.add_argument("--namespace", help="namespace for everything knflow creates (default: the profile's, knflow)")
        p.add_argument(
            "--profile", metavar="FILE", help="cluster profile YAML: GPU pools, broker class, router, Serving limits"
        )

    def generation(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "pipelines", nargs="+", metavar="PIPELINE", help="pipeline files: YAML, or Python with @pipeline"
        )
        p.add_argument("--image", help="the project image (functions and router), e.g. ghcr.io/acme/knflow:0.1.0")
        cluster(p)
        p.add_argument(
            "--features-patch",
            action="store_true",
            help="add a config-features patch enabling the Serving flags the function Services need",
        )
        functions(p)

    def kube(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)"
        )
        p.add_argument("--context", help="kubeconfig context (default: the current one)")

    p = subparsers.add_parser(
        "manifests", help="write the Knative manifests for pipelines (kubectl apply -f takes them)"
    )
    generation(p)
    p.add_argument(
        "-o", "--output", metavar="DIR", help="write one YAML file per kind of resource into DIR instead of stdout"
    )
    p.set_defaults(fn=cmd_manifests)

    p = subparsers.add_parser(
        "deploy", help="apply the Knative manifests for pipelines to a cluster (server-side apply)"
    )
    generation(p)
    p.add_argument("--dry-run", action="store_true", help="ask the API server what would change; change nothing")
    kube(p)
    p.set_defaults(fn=cmd_deploy)

    p = subparsers.add_parser("status", help="show which of knflow's Knative resources are ready")
    cluster(p)
    kube(p)
    p.set_defaults(fn=cmd_status)


def load_pipelines(paths: list[str], functions: list[str]) -> list:
    """YAML pipeline files (validated), and Python files whose module-level @pipeline objects are taken."""
    from functions.registry import load_module
    from router.pipeline import Pipeline
    from router.loader import load

    for ref in functions:
        load_module(ref)
    out = []
    for path in paths:
        if path.endswith(".py"):
            found = [v for v in vars(load_module(path)).values() if isinstance(v, Pipeline)]
            if not found:
                raise KnflowError(f"{path} defines no @pipeline")
            out += found
        else:
            out.append(load(path, extra_functions=functions))
    return out


def _profile(args: argparse.Namespace):
    """The profile file with the command line's overrides, validated as one."""
    from knative.profile import load_profile, parse_profile

    doc = load_profile(args.profile).model_dump(by_alias=True)
    for key in ("namespace", "image"):
        if getattr(args, key, None) is not None:
            doc[key] = getattr(args, key)
    if getattr(args, "features_patch", False):
        doc["serving"]["features_patch"] = True
    return parse_profile(doc, f"profile {args.profile}" if args.profile else "command line")


def _bundle(args: argparse.Namespace):
    from knative.manifests import build

    profile = _profile(args)
    return build(load_pipelines(args.pipelines, args.functions), profile=profile, root=Path.cwd()), profile


def _print_notes(bundle) -> None:
    for note in bundle.notes:
        print(f"note: {note}", file=sys.stderr)


def cmd_manifests(args: argparse.Namespace) -> int:
    from knative.manifests import FILES, OTHER_FILE, files, to_yaml

    bundle, _ = _bundle(args)
    if not args.output:
        sys.stdout.write(to_yaml(bundle.manifests))
        _print_notes(bundle)
        return 0
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = files(bundle)
        for name in [*FILES.values(), OTHER_FILE]:
            if name not in written and (out / name).exists():
                (out / name).unlink()  # left from an earlier run: it would apply what is no longer wanted
        for name, text in written.items():
            (out / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise KnflowError(f"cannot write manifests to {out}: {exc.strerror or exc}") from None
    for name, text in written.items():
        count = text.count("\n---\n") + 1
        print(f"wrote {out / name} ({count} resource{'s' if count != 1 else ''})", file=sys.stderr)
    _print_notes(bundle)
    print(f"apply with: kubectl apply -f {out}", file=sys.stderr)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from knative.deploy import KubeApi, apply

    bundle, profile = _bundle(args)
    _print_notes(bundle)  # before applying: a missing feature flag makes the API server refuse a Service
    api = KubeApi.connect(args.kubeconfig, args.context)
    changes = apply(api, bundle.manifests, dry_run=args.dry_run)
    for change in changes:
        print("\n".join(change.lines()))
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in counts.items())
    print(f"{'dry run, nothing changed: ' if args.dry_run else ''}{summary}", file=sys.stderr)
    if not args.dry_run:
        print(f"watch with: knflow status --namespace {profile.namespace}", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from knative.deploy import KubeApi, format_rows, status

    namespace = _profile(args).namespace
    rows = status(KubeApi.connect(args.kubeconfig, args.context), namespace)
    resources = [r for r in rows if r.name != "-"]
    if not resources:
        print(f"no knflow resources in namespace '{namespace}'", file=sys.stderr)
        return 1
    print(format_rows(rows))
    return 0 if all(r.ready == "True" for r in resources) else 1

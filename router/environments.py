"""Variables per environment: `variables: {default: {...}, prod: {...}}`, one section chosen per process.

The rule: a pipeline's `variables` mapping is per environment when it has a `default` key whose value is a
mapping; then every top-level key names an environment and each value is that environment's variables.
Otherwise it is the plain variables of the one (default) environment, as before. The chosen environment
(`--env NAME`, `KNFLOW_ENV`, a Knative profile's `environment:`) takes `default`'s values with its own
overriding them key by key. A pipeline without environments takes any environment as its default.

Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from broker.errors import KnflowError

DEFAULT = "default"
NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
ENV_HELP = "the environment whose variables the pipelines take (default: KNFLOW_ENV, else 'default')"
NAME_RULE = "1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"


class UnknownEnvironment(KnflowError):
    """The environment chosen for a process is not one of a pipeline's environments."""

    def __init__(self, message: str, *, pipeline: str, environment: str) -> None:
        super().__init__(message, pipeline=pipeline, environment=environment)
        self.environment = environment


def is_sectioned(variables: dict[str, Any]) -> bool:
    """Whether `variables` is per environment (the rule above)."""
    return isinstance(variables.get(DEFAULT), dict)


def problems(variables: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for each top-level key of sectioned variables that is not an environment's section."""
    if not is_sectioned(variables):
        return []
    out = []
    for key, value in variables.items():
        if not isinstance(value, dict):
            out.append(
                (
                    str(key),
                    f"variables has a '{DEFAULT}' section, so its top-level keys are environments, but "
                    f"'{key}' holds {value!r}, not a mapping of variables. Move '{key}' under "
                    f"'{DEFAULT}' (or an environment), or rename the '{DEFAULT}' variable",
                )
            )
        elif not isinstance(key, str) or not NAME.match(key):
            out.append((str(key), f"environment name {key!r} must be {NAME_RULE}"))
    return out


def resolve(
    pipeline: str, environments: dict[str, dict[str, Any]], environment: str | None, source: str | None = None
) -> dict[str, Any]:
    """The variables of `environment` (None: the default): `default`'s, overridden key by key by its own."""
    env = environment or DEFAULT
    if env not in environments:
        where = f" ({source})" if source else ""
        raise UnknownEnvironment(
            f"pipeline '{pipeline}'{where} has no environment '{env}'; its environments are "
            f"{', '.join(environments)}. Add a '{env}:' section under its variables, or choose one of those "
            "(--env, KNFLOW_ENV, the Knative profile's environment)",
            pipeline=pipeline,
            environment=env,
        )
    return {**environments[DEFAULT], **environments[env]}


def check_name(value: str | None, what: str) -> str | None:
    """`value` if it is a valid environment name (or None); a clear error naming `what` otherwise."""
    if value is not None and not NAME.match(value):
        raise ValueError(f"{what} {value!r} must be {NAME_RULE}, such as 'prod'")
    return value


def env_arg(value: str) -> str:
    """argparse's `type` of `--env NAME`."""
    if not NAME.match(value):
        import argparse  # the CLI's, imported there: `import knflow` does not pay it

        raise argparse.ArgumentTypeError(f"environment {value!r} must be {NAME_RULE}, such as 'prod'")
    return value

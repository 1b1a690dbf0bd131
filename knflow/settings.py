"""Settings from the environment (`KNFLOW_*`, and Knative's `PORT` and `K_SINK`), flags override them."""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Final

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.codec import MAX_BODY_BYTES
from broker.errors import KnflowError
from broker.redact import MASK, redact
from functions import blobs
from router import environments
from router.hops import MAX_HOPS
from router.retention import DEFAULT_RETENTION
from router.run_events import RUN_EVENTS_MODES, RunEvents

DEFAULT_STORE = "sqlite:///knflow.db"  # the run store when no flag or variable names one (`knflow run`, `knflow dev`)
# settings whose whole value is a secret: never shown, not even masked in part
SECRET_FIELD = re.compile(r"secret|token|password|(^|_)key$", re.IGNORECASE)


class SettingsInvalid(KnflowError, ValueError):
    """A `KNFLOW_*` variable holds a value its setting cannot take; the message names each variable, with
    secrets and URL passwords masked."""

    def __init__(self, message: str, *, variables: list[str]) -> None:
        super().__init__(message, variables=variables)
        self.variables = variables


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KNFLOW_", extra="ignore")

    # the router's run store (on Knative from the Secret the profile's router.mongodb_secret names). Builtins
    # never read it: mongodb-query/-insert read KNFLOW_MONGODB_URL, their own database, not the router's
    store_url: str = DEFAULT_STORE
    nats_url: str | None = None
    stream: str = "KNFLOW"
    subject_prefix: str = "knflow"  # the stream's subjects are PREFIX.>; two streams need two prefixes
    function: str | None = None  # the function a function service runs
    functions: str = ""  # comma-separated modules that define functions
    pipelines: str = ""  # comma-separated pipeline files the router loads at start
    max_body_bytes: int = Field(MAX_BODY_BYTES, gt=0)
    max_hops: int = Field(MAX_HOPS, ge=0)  # pipelines started by pipelines' run events: refused past this depth
    # which dev.knflow.run.* events the router publishes (router/run_events.py): `auto`, those a pipeline's
    # trigger may consume; `all`, every run's, for consumers of `knflow.run.>` or Knative Triggers outside knflow
    run_events: RunEvents = "auto"
    webhook_secret: str | None = None  # when set, /hooks/* take it (header or an HMAC signature) instead of a token
    admin_token: str | None = None  # the bootstrap admin token of the router's API (a Secret on Knative)
    # signs each invoke's result secret (router/result_keys.py); the same on every router replica. Unset: the
    # routers of one store share a random key kept in it (created by the first)
    result_key: SecretStr | None = None
    # Prometheus metrics (broker/metrics.py, which reads KNFLOW_METRICS when imported): off only for a bench baseline
    metrics: bool = True
    # the bearer token every service's /metrics takes (the router takes a `read` token too); unset, a function
    # service's and a dispatcher's /metrics answer whoever reaches them, as their POST / does
    metrics_token: SecretStr | None = None
    metrics_port: int = Field(0, ge=0, lt=65536)  # `knflow serve dispatcher`'s /metrics; 0: a free port, printed
    sweep_interval_s: float = Field(5.0, gt=0)  # how often a router looks for runs a crash left behind
    sweep_after_s: float = Field(30.0, gt=0)  # a node `scheduled` this long has its invoke published again
    # how long runs are kept (`7d`, `12h`) when their pipeline sets no `retention:` (router/retention.py)
    retention: str = DEFAULT_RETENTION
    # the environment whose variables the pipelines take (router/environments.py); `--env NAME` overrides it
    env: str | None = None
    port: int = Field(8080, validation_alias=AliasChoices("PORT", "KNFLOW_PORT"))
    k_sink: str | None = Field(None, validation_alias=AliasChoices("K_SINK", "KNFLOW_K_SINK"))
    # large payloads (functions.blobs; function processes read the same two variables without this class)
    blob_url: str | None = (
        None  # file:// or s3://bucket/prefix; default file://CWD/.knflow/blobs. Shared storage on a cluster
    )
    blob_threshold_bytes: int = Field(
        blobs.DEFAULT_THRESHOLD_BYTES, gt=0
    )  # outputs and invokes over this go to the blob store

    def __init__(self, *args: Any, **values: Any) -> None:
        try:
            super().__init__(*args, **values)
        except ValidationError as err:
            raise _invalid(err) from None

    def __repr_args__(self) -> Any:
        """`repr(settings)` and `str(settings)`: secret settings as ****, URLs with their passwords masked."""
        for name, value in super().__repr_args__():
            yield name, shown(name, value)

    @field_validator("retention")
    @classmethod
    def _a_duration(cls, value: str) -> str:
        if value == DEFAULT_RETENTION:  # valid by construction; parsing it imports the router's engine
            return value
        from router.replay import InvalidDuration, parse_duration_s

        try:
            if parse_duration_s(value) <= 0:
                raise ValueError("expected a duration longer than nothing, such as 30d")
        except InvalidDuration:
            raise ValueError("expected a number and a unit: 12h, 7d, 30d") from None
        return value

    @property
    def retention_s(self) -> float:
        from router.replay import parse_duration_s

        return parse_duration_s(self.retention)

    @field_validator("run_events", mode="before")
    @classmethod
    def _run_events_mode(cls, value: Any) -> Any:
        if value not in RUN_EVENTS_MODES:
            raise ValueError(
                "expected auto (run events only where a pipeline's trigger listens to them) "
                "or all (every run's, for consumers outside knflow)"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return environments.check_name(value, "the environment")

    @model_validator(mode="after")
    def _blobs_fit_the_broker(self) -> Settings:
        if self.blob_threshold_bytes >= self.max_body_bytes:
            raise ValueError(
                f"KNFLOW_BLOB_THRESHOLD_BYTES ({self.blob_threshold_bytes}) must be below KNFLOW_MAX_BODY_BYTES "
                f"({self.max_body_bytes}): what is over the threshold goes to the blob store, "
                "the rest must fit on the broker"
            )
        return self

    def blob_store(self) -> blobs.BlobStore:
        return blobs.BlobStore(self.blob_url, self.blob_threshold_bytes)

    @property
    def store(self) -> str:
        return self.store_url

    @property
    def function_modules(self) -> list[str]:
        return [m.strip() for m in self.functions.split(",") if m.strip()]

    @property
    def pipeline_files(self) -> list[str]:
        return [m.strip() for m in self.pipelines.split(",") if m.strip()]


# KNFLOW_* variables read outside Settings (the builtins, the CLI's client); known, so no near miss of them is flagged
OTHER_VARIABLES: Final = frozenset(
    {
        "KNFLOW_TOKEN",
        "KNFLOW_HTTP_ALLOW_NETS",
        "KNFLOW_HTTP_CONNECT_TO",
        "KNFLOW_HTTP_MAX_RESPONSE_BYTES",
        "KNFLOW_REDIS_URL",
        "KNFLOW_MONGODB_URL",
        "KNFLOW_OPENAI_BASE_URL",
        "KNFLOW_OPENAI_API_KEY",
        "KNFLOW_OPENAI_MODEL",
        "KNFLOW_OPENAI_EMBEDDING_MODEL",
        "KNFLOW_FAULT_CRASH_AT",  # broker/faults.py: the crash tests' fault injection
    }
)


def check_environment() -> Settings:
    """Every command's first step: the settings read and checked at once, so that a bad `KNFLOW_*` value stops
    the command with SettingsInvalid naming the variable and the form it takes, before any work; a name that
    is a near miss of a setting's (a typo the settings would ignore) gets a warning on stderr."""
    from broker import faults
    from functions import netguard  # the builtins' allow list, read again at each outbound call

    settings = Settings()
    try:
        netguard.parse_allow_list(os.environ.get(netguard.SETTING, ""))
    except KnflowError as exc:
        raise SettingsInvalid(f"invalid settings: {exc}", variables=[netguard.SETTING]) from None
    try:
        faults.parse(os.environ.get(faults.SETTING, ""))
    except ValueError as exc:
        raise SettingsInvalid(f"invalid settings: {exc}", variables=[faults.SETTING]) from None
    for hint in near_misses(os.environ):
        print(f"knflow: warning: {hint}", file=sys.stderr)
    return settings


def near_misses(environ: Any) -> list[str]:
    """`KNFLOW_*` names that no part reads but that are a typo of one that does (two letters off, or the name
    without its unit, `KNFLOW_SWEEP_INTERVAL` for `KNFLOW_SWEEP_INTERVAL_S`). The tests' `KNFLOW_TEST_*` and
    a pipeline's own secret variables are far from every setting, so they are left alone."""
    known = {f"KNFLOW_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    hints = []
    unknown = sorted(n for n in environ if n.startswith("KNFLOW_") and n not in known)
    for name in (n for n in unknown if not n.startswith("KNFLOW_TEST_")):
        if match := next((k for k in sorted(known) if _typo_of(name, k)), None):
            hints.append(f"{name} is not a knflow setting and is ignored; did you mean {match}?")
    return hints


def _typo_of(name: str, known: str) -> bool:
    return known.startswith(name + "_") or _edits(name, known) <= 2


def _edits(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def shown(name: str | None, value: Any) -> Any:
    """A setting's value as it may be printed: a secret one masked whole, a URL with its password masked."""
    if value is None:
        return None
    if name and SECRET_FIELD.search(name):
        return MASK
    return redact(value) if isinstance(value, str) else value


def _invalid(err: ValidationError) -> SettingsInvalid:
    reasons, variables = [], []
    for item in err.errors(include_url=False):
        name = str(item["loc"][0]) if item["loc"] else None
        message = item["msg"].removeprefix("Value error, ")
        if name is None:  # a rule over several settings: its message names them
            reasons.append(redact(message))
            continue
        var = name if name.isupper() else f"KNFLOW_{name.upper()}"
        variables.append(var)
        reasons.append(f"{var} has value {shown(name, item['input'])!r}: {redact(message)}")
    return SettingsInvalid("invalid settings: " + "; ".join(reasons), variables=variables)

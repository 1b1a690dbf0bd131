"""Settings from the environment (`KNFLOW_*`, and Knative's `PORT` and `K_SINK`), flags override them."""

from __future__ import annotations

import re
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.codec import MAX_BODY_BYTES
from broker.errors import KnflowError
from broker.redact import MASK, redact
from functions import blobs
from router.hops import MAX_HOPS
from router.retention import DEFAULT_RETENTION

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
    max_body_bytes: int = MAX_BODY_BYTES
    max_hops: int = MAX_HOPS  # pipelines started by pipelines' run events: refuse the chain past this depth
    webhook_secret: str | None = None  # when set, /hooks/* take it (header or an HMAC signature) instead of a token
    admin_token: str | None = None  # the bootstrap admin token of the router's API (a Secret on Knative)
    # signs each invoke's result secret (router/result_keys.py); the same on every router replica. Unset: the
    # routers of one store share a random key kept in it (created by the first)
    result_key: SecretStr | None = None
    sweep_interval_s: float = 5.0  # how often a router looks for runs a crash left behind
    sweep_after_s: float = 30.0  # a node `scheduled` this long has its invoke published again
    # how long runs are kept (`7d`, `12h`) when their pipeline sets no `retention:` (router/retention.py)
    retention: str = DEFAULT_RETENTION
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

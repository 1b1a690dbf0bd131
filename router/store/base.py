"""The store interface both backends implement, and the errors they raise."""

from __future__ import annotations

from typing import Any, Protocol, TypedDict, cast

from broker.errors import KnflowError
from router.node_logs import LogBatch, LogLine
from router.runs import ItemState, RunChange, RunDoc, Transition, split_key
from router.tokens import TokenRecord


class RunNotFound(KnflowError):
    """No run has the id `run_id`."""

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.run_id = run_id


class RunExists(KnflowError):
    """A run with the id `run_id` is stored already (the same trigger delivered again)."""

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.run_id = run_id


class RunUnreadable(KnflowError):
    """A run the store has (its id is taken) but cannot read back now; a retry may succeed."""

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.run_id = run_id


class Committed(tuple[RunDoc, list[bool], bool]):
    """What `commit` returns: read as `(run, won, run_won)` (the light run after the writes, which
    transitions won, whether the run change won), and `items`: the state after the writes of each item a
    transition names (by its key `gen[2]`, without its output; an item the run lacks is absent). The light
    run holds a fan-out node's counters, not its items, so the router reads an item's result (its duration
    metric, its span, a duplicate's state) from `items` rather than from the store."""

    items: dict[str, ItemState]

    def __new__(
        cls, run: RunDoc, won: list[bool], run_won: bool, items: dict[str, ItemState] | None = None
    ) -> Committed:
        self = super().__new__(cls, (run, won, run_won))
        self.items = items or {}
        return self

    @property
    def run(self) -> RunDoc:
        return self[0]


def item_results(run: RunDoc, transitions: list[Transition]) -> dict[str, ItemState]:
    """Pure: `Committed.items` from a run document that holds the items the transitions name (`apply`'s)."""
    out: dict[str, ItemState] = {}
    for t in transitions:
        node, index = split_key(t.node)
        if index is None:
            continue
        state = run["nodes"].get(node)
        item = (state.get("items") or {}).get(str(index)) if state is not None else None
        if item is not None:
            out[t.node] = cast(ItemState, {k: v for k, v in item.items() if k not in ("output", "output_key")})
    return out


class RunCount(TypedDict):
    pipeline: str
    status: str
    count: int


class RunStore(Protocol):
    async def create_run(self, run: RunDoc) -> None:
        """Insert a new run document; RunExists if its id is taken."""

    async def get_run(self, run_id: str, *, light: bool = False) -> RunDoc | None:
        """The full run: with its fan-out nodes' items (and a succeeded one's output list); with `light`,
        the light run (router/runs.py `light`: the counters only), what a poll of a big run reads."""

    async def get_item(self, run_id: str, node: str, index: int) -> ItemState | None:
        """One item's state of a fan-out node (without its output); None if there is none."""

    async def get_items(self, run_id: str, node: str) -> list[ItemState]:
        """The items of fan-out node `node` of a run, in order, with their outputs ([] if none)."""

    async def commit(
        self, run_id: str, transitions: list[Transition], run_change: RunChange | None = None
    ) -> Committed:
        """Store a step: compare-and-set each transition; the run change wins only if every transition won.

        Returns the light run after the writes (router/runs.py `light`: no items, the counters instead),
        which transitions won, whether the run change won, and the states of the items the transitions name
        (`Committed`). An item transition reads and writes that item alone, and its node's counters. Raises
        RunNotFound.
        """

    async def list_runs(
        self,
        pipeline: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        since: str | None = None,
        until: str | None = None,
        trigger: str | None = None,
        offset: int = 0,
    ) -> list[RunDoc]:
        """Newest first, light runs (no items): created at `since` or later and before `until` (ISO times),
        started by an event of type `trigger`, skipping the first `offset`."""

    async def count_runs(self, *, since: str | None = None, status: str | None = None) -> list[RunCount]:
        """How many runs were created at `since` or later (the dashboard's counts) and have `status` (the
        metric knflow_runs_in_flight), by pipeline and status, ordered so; a pair with no run left out."""

    async def prune_runs(
        self,
        expired_by: str | None,
        undated_before: str | None,
        created_before: str | None,
        dry_run: bool = False,
        limit: int = 1000,
    ) -> list[RunDoc]:
        """Delete at most `limit` runs with their node logs and items (light runs, oldest first): those whose
        `expires_at` is at or before `expired_by`, those without one created before `undated_before`, and
        those created before `created_before`. With `dry_run`, only list them."""

    async def get_or_create_secret(self, name: str, value: str) -> str:
        """The secret stored as `name` (one small row), storing `value` first if there is none: insert-if-absent,
        so routers that race on an empty store all get the one that was stored first."""

    async def put_pipeline(self, name: str, definition: dict[str, Any], source: str | None = None) -> None:
        """Store the pipeline's document and, when it came as YAML text, that text as written (`source`, comments
        and order kept for the editor); None (a JSON PUT, a DSL pipeline) replaces a source stored before."""

    async def get_pipeline_source(self, name: str) -> str | None:
        """The YAML text stored with pipeline `name`; None when it has none or there is no such pipeline."""

    async def get_pipeline(self, name: str) -> dict[str, Any] | None: ...

    async def list_pipelines(self) -> list[dict[str, Any]]: ...

    async def delete_pipeline(self, name: str) -> bool: ...

    async def put_token(self, token: TokenRecord) -> None:
        """Store a new token record; TokenExists if a token that is not revoked has its name (a revoked
        one is replaced)."""

    async def get_token(self, token_hash: str) -> TokenRecord | None:
        """The token with this hash, revoked or not."""

    async def list_tokens(self) -> list[TokenRecord]:
        """By name."""

    async def revoke_token(self, name: str, revoked_at: str) -> bool:
        """Mark the token `name` revoked (once: a revoked token keeps its first time); False if there is none."""

    async def append_logs(self, run_id: str, node: str, attempt: int, batch: LogBatch) -> int:
        """Store one try's node log lines (router/node_logs.py) after the run's last, numbering them on from its
        last `seq`; a batch this attempt has already (the same result delivered again) is not stored twice.
        Returns how many lines were stored now."""

    async def read_logs(
        self, run_id: str, node: str | None = None, attempt: int | None = None, after: int = 0, limit: int = 1000
    ) -> tuple[list[LogLine], dict[str, int]]:
        """The lines with `seq` > `after`, by seq, at most `limit`; `node` is a node (with its items) or an item
        key (`gen[3]`). And the lines dropped in that scope, per "NODE:ATTEMPT" (only tries that dropped some)."""

    async def close(self) -> None: ...

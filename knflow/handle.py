"""A started run: `handle = await knflow.start_run(stack, pipeline, data)`, then `await handle.result()`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from broker.errors import KnflowError

if TYPE_CHECKING:
    from knflow.local import EmbeddedStack


@dataclass(frozen=True)
class RunHandle:
    """The run `id` at once; `await result()` waits for the run to end and returns its record."""

    id: str
    stack: EmbeddedStack = field(repr=False)

    async def result(self) -> dict[str, Any]:
        from router.runs import record

        run = await self.stack.wait(self.id)
        if run is None:
            raise KnflowError(f"run '{self.id}' is not in the stack's store")
        return record(run)

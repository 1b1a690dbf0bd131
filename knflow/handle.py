"""A started run: `handle = await knflow.start_run(stack, pipeline, data)`, then `await handle.result()`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from knflow.local import EmbeddedStack
    from router.runs import RunRecord


@dataclass(frozen=True)
class RunHandle:
    """The run `id` at once; `await result()` waits for the run to end and returns its record."""

    id: str
    stack: EmbeddedStack = field(repr=False)

    async def result(self) -> RunRecord:
        """The run's record once it has ended; RunNotFound (a KnflowError) if the stack's store has no such run."""
        from router.runs import record

        return record(await self.stack.wait(self.id))

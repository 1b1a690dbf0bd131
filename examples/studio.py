"""A pipeline in the shape of the Kubeflow seed, with honest small functions that run offline:

    analyse a text -> classify its mood -> four variants in parallel -> pick one

The seed ran speech-to-text, a sentiment classifier and four generative-model runs on GPUs; here each
step is a few lines of plain Python, so the shape (fan-out, fan-in) runs anywhere.

    knflow run examples/studio.py --data '{"text": "The rain stopped and the city woke up glad."}'
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from knflow import Context, function, pipeline

POSITIVE = {"glad", "happy", "bright", "love", "warm", "good", "great", "calm", "woke", "sun", "joy"}
NEGATIVE = {"sad", "dark", "cold", "rain", "lost", "bad", "fear", "alone", "grey", "storm"}


class Text(BaseModel):
    text: str


class Analysis(BaseModel):
    text: str
    words: int
    sentences: int
    positive: int
    negative: int


class Mood(BaseModel):
    mood: str
    confidence: float


class VariantRequest(BaseModel):
    text: str
    mood: str
    style: str


class Variant(BaseModel):
    style: str
    text: str
    chars: int


class Candidates(BaseModel):
    a: Variant
    b: Variant
    c: Variant
    d: Variant
    target_chars: int = 60


class Choice(BaseModel):
    style: str
    text: str
    why: str


@function(timeout_s=10, cpu="250m", memory="128Mi")
async def analyse(inp: Text, ctx: Context) -> Analysis:
    """Count words and sentences, and words from two small sentiment lexicons."""
    words = re.findall(r"[a-zA-Z']+", inp.text.lower())
    sentences = max(1, len(re.findall(r"[.!?]+", inp.text)))
    ctx.log.info("analysed", words=len(words))
    return Analysis(
        text=inp.text,
        words=len(words),
        sentences=sentences,
        positive=sum(w in POSITIVE for w in words),
        negative=sum(w in NEGATIVE for w in words),
    )


@function(timeout_s=10)
async def classify(inp: Analysis) -> Mood:
    """The mood with the most lexicon hits; confidence is its share of all hits."""
    hits = inp.positive + inp.negative
    if hits == 0:
        return Mood(mood="neutral", confidence=0.0)
    mood = "upbeat" if inp.positive >= inp.negative else "dark"
    return Mood(mood=mood, confidence=round(max(inp.positive, inp.negative) / hits, 3))


@function(timeout_s=30, max_scale=4)
async def variant(inp: VariantRequest) -> Variant:
    """One rewrite of the text in a style (the seed's generative model, as a few string rules)."""
    first = re.split(r"(?<=[.!?])\s+", inp.text.strip())[0]
    if inp.style == "headline":
        text = first.rstrip(".!?").title()
    elif inp.style == "whisper":
        text = "..." + first.lower().rstrip(".!?") + "..."
    elif inp.style == "shout":
        text = first.upper().rstrip(".") + "!"
    else:
        text = f"[{inp.mood}] {inp.text.strip()}"
    return Variant(style=inp.style, text=text, chars=len(text))


@function(timeout_s=10)
async def pick(inp: Candidates) -> Choice:
    """The variant whose length is closest to the target."""
    best = min((inp.a, inp.b, inp.c, inp.d), key=lambda v: abs(v.chars - inp.target_chars))
    return Choice(style=best.style, text=best.text, why=f"{best.chars} chars, closest to {inp.target_chars}")


@pipeline(name="studio", trigger={"type": "webhook"})
def studio(trigger):
    """analyse -> classify -> four variants in parallel -> pick one."""
    facts = analyse(trigger)
    mood = classify(facts)
    styles = ("headline", "whisper", "shout", "tagged")
    a, b, c, d = (variant(text=facts.text, mood=mood.mood, style=s, _id=f"variant-{s}") for s in styles)
    return pick(a, b, c, d)

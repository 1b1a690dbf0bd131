"""Functions for examples/hello.yaml: split a sentence into words, count them, shout them."""

from pydantic import BaseModel

from knflow import Context, function


class Sentence(BaseModel):
    text: str


class Words(BaseModel):
    words: list[str]


class Count(BaseModel):
    count: int


class Shout(BaseModel):
    text: str


class Summary(BaseModel):
    count: int
    shout: str


@function(timeout_s=5)
async def split_words(inp: Sentence, ctx: Context) -> Words:
    """Split text on whitespace."""
    ctx.log.debug("splitting", chars=len(inp.text))
    return Words(words=inp.text.split())


@function(timeout_s=5)
async def count_words(inp: Words) -> Count:
    return Count(count=len(inp.words))


@function(timeout_s=5)
async def shout_words(inp: Words) -> Shout:
    return Shout(text=" ".join(w.upper() for w in inp.words) + "!")


@function(timeout_s=5)
async def summarize(inp: Summary) -> Summary:
    return inp

"""`llm-generate` (prompt → text), `llm-chat` (messages → message) and `embedding` (texts → vectors).

They call any OpenAI-compatible server (vLLM, llama.cpp, OpenAI) through the `openai` client, streaming
off; where the server is, and how failures are retried, is `functions.builtins.llm_server`'s business.
Config keys are accepted in snake_case and camelCase alike (`max_tokens` or `maxTokens`), as in the Flume
seed's `model: ..., maxTokens: 4096`.

They are GPU functions (`gpu=1`: on Knative they run on GPU nodes, next to a model server), but they only
call a server, so they run anywhere. Close their clients at shutdown with `await aclose_client()`.
"""

from __future__ import annotations

import os
from typing import Any, Literal, TypeVar, cast

from openai import Omit, omit
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from functions.builtins import local_embedding
from functions.builtins.llm_server import MAX_TIMEOUT_S, ServerConfig, aclose_client, request, resolve, shown
from functions.errors import FunctionError
from functions.sdk import Context, Retry, function

__all__ = ["aclose_client", "embedding", "llm_chat", "llm_generate"]

MAX_TEXTS = 2048  # texts in one embedding request
RETRY = Retry(retries=3, delay_s=2.0, max_delay_s=60.0)


class Sampling(ServerConfig):
    max_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None


class GenerateInput(Sampling):
    """Input of `llm-generate`: a `prompt`, an optional `system` prompt, the server and sampling options."""

    prompt: str = Field(min_length=1)
    system: str | None = None


class GeneratedText(RootModel[str]):
    """The generated text itself: a next node reads it as `{{ generate.output }}`."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None


class ChatInput(Sampling):
    """Input of `llm-chat`: the conversation so far, oldest first."""

    messages: list[ChatMessage] = Field(min_length=1)


class ChatReply(BaseModel):
    """The model's answer, a message that a next `llm-chat` can append to its `messages`."""

    role: Literal["assistant"] = "assistant"
    content: str


class EmbeddingInput(ServerConfig):
    """Input of `embedding`: one text or a list of them, and optionally the `dimensions` of the vectors."""

    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS)
    dimensions: int | None = Field(None, gt=0)

    @field_validator("texts", mode="before")
    @classmethod
    def _one_text(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Embeddings(BaseModel):
    """One vector per text, in the order of `texts`."""

    vectors: list[list[float]]
    model: str
    dimensions: int


@function(name="llm-generate", timeout_s=MAX_TIMEOUT_S + 10, retries=RETRY, gpu=1)
async def llm_generate(inp: GenerateInput, ctx: Context) -> GeneratedText:
    """Generate text from `prompt` (and an optional `system` prompt); the output is the text."""
    messages = [ChatMessage(role="system", content=inp.system)] if inp.system else []
    messages.append(ChatMessage(role="user", content=inp.prompt))
    return GeneratedText(await _chat(inp, messages, ctx))


@function(name="llm-chat", timeout_s=MAX_TIMEOUT_S + 10, retries=RETRY, gpu=1)
async def llm_chat(inp: ChatInput, ctx: Context) -> ChatReply:
    """Answer a conversation (`messages`: role and content, oldest first) with the assistant's message."""
    return ChatReply(content=await _chat(inp, inp.messages, ctx))


@function(name="embedding", timeout_s=MAX_TIMEOUT_S + 10, retries=RETRY, gpu=1)
async def embedding(inp: EmbeddingInput) -> Embeddings:
    """Embed each of `texts`; the output is `{"vectors", "model", "dimensions"}`, vectors in input order.

    `model: local:all-MiniLM-L6-v2` runs a local model in-process instead of calling a server
    (functions/builtins/local_embedding.py)."""
    model = inp.model or os.environ.get("KNFLOW_OPENAI_EMBEDDING_MODEL")
    if local_embedding.is_local(model):
        vectors, name = await local_embedding.embed(model, inp.texts, inp.dimensions)
        return Embeddings(vectors=vectors, model=name, dimensions=len(vectors[0]))
    server = resolve(inp, embedding=True)
    what = f"embedding with model '{server.model}'"
    reply = await request(
        what,
        server,
        inp.timeout_s,
        lambda client: client.embeddings.create(
            model=server.model,
            input=inp.texts,
            encoding_format="float",
            timeout=inp.timeout_s,
            dimensions=inp.dimensions or omit,
        ),
    )
    rows = sorted(reply.data, key=lambda row: row.index)
    if len(rows) != len(inp.texts):
        raise FunctionError(
            f"{what} at {shown(server.base_url)} answered {len(rows)} vectors for {len(inp.texts)} texts",
            type="LlmInvalidResponse",
        )
    vectors = [list(row.embedding) for row in rows]
    return Embeddings(vectors=vectors, model=reply.model or server.model, dimensions=len(vectors[0]))


async def _chat(inp: Sampling, messages: list[ChatMessage], ctx: Context) -> str:
    server = resolve(inp)
    what = f"chat completion with model '{server.model}'"
    completion = await request(
        what,
        server,
        inp.timeout_s,
        lambda client: client.chat.completions.create(
            model=server.model,
            # ChatMessage validated the shape of openai's message TypedDicts, which pydantic cannot name
            messages=cast("list[ChatCompletionMessageParam]", [m.model_dump(exclude_none=True) for m in messages]),
            stream=False,
            timeout=inp.timeout_s,
            max_tokens=_or_omit(inp.max_tokens),
            temperature=_or_omit(inp.temperature),
            top_p=_or_omit(inp.top_p),
            stop=_or_omit(inp.stop),
            seed=_or_omit(inp.seed),
        ),
    )
    if not completion.choices:
        raise FunctionError(f"{what} at {shown(server.base_url)} answered no choices", type="LlmInvalidResponse")
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        ctx.log.warning("generation stopped at max_tokens", model=server.model, max_tokens=inp.max_tokens)
    return choice.message.content or ""


T = TypeVar("T")


def _or_omit(value: T | None) -> T | Omit:
    """`value`, or openai's marker that leaves the option out of the request (None would send null)."""
    return omit if value is None else value

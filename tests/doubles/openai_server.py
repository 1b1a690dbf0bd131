"""A test double for an OpenAI-compatible server (vLLM, llama.cpp, OpenAI): no model can be served here.

It speaks the wire format of `POST /v1/chat/completions` and `POST /v1/embeddings` and answers
deterministically, so tests can assert what a builtin sent and what it made of the answer:

- a chat completion's content is `echo: ` + the last message's content (`[system] ` in front when the
  conversation has a system message); `finish_reason` is `length` when `max_tokens` is under 3;
- an embedding is `dimensions` (default 8) numbers from the SHA-256 of the text, listed in REVERSE order
  of `index`, so a client must sort by `index`;
- model `status-NNN` answers HTTP NNN with an OpenAI-style error body (`Retry-After: 3` on 429 and 503);
  model `slow` waits until `release` is set; model `no-choices` answers `choices: []`;
- bearer token `wrong-key` gets 401 `Incorrect API key provided`.

Every request body is kept in `requests` (with its `authorization` header).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from aiohttp import web

DEFAULT_DIMENSIONS = 8


class OpenAIServerDouble:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.url = ""  # the base URL, ending in /v1
        self._runner: web.AppRunner | None = None

    async def start(self) -> OpenAIServerDouble:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/v1"
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _scripted(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json()
        self.requests.append({**body, "authorization": request.headers.get("authorization")})
        if request.headers.get("authorization") == "Bearer wrong-key":
            return body, _error(401, "Incorrect API key provided: wrong-key.", "invalid_api_key")
        model = str(body.get("model", ""))
        if model.startswith("status-"):
            return body, _error(int(model.removeprefix("status-")), f"scripted failure for model {model}", "scripted")
        if model == "slow":
            await self.release.wait()
        return body, None

    async def chat(self, request: web.Request) -> web.Response:
        body, failed = await self._scripted(request)
        if failed is not None:
            return failed
        messages = body.get("messages") or []
        if not messages:
            return _error(400, "'messages' must not be empty", "invalid_request")
        if body.get("model") == "no-choices":
            return web.json_response(_completion(body, []))
        system = "[system] " if any(m.get("role") == "system" for m in messages) else ""
        content = f"{system}echo: {messages[-1].get('content', '')}"
        max_tokens = body.get("max_tokens")
        finish = "length" if isinstance(max_tokens, int) and max_tokens < 3 else "stop"
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish,
            "logprobs": None,
        }
        return web.json_response(_completion(body, [choice]))

    async def embeddings(self, request: web.Request) -> web.Response:
        body, failed = await self._scripted(request)
        if failed is not None:
            return failed
        texts = body["input"] if isinstance(body.get("input"), list) else [body.get("input")]
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        data = [
            {"object": "embedding", "index": i, "embedding": vector_of(text, dimensions)}
            for i, text in enumerate(texts)
        ]
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        return web.json_response({"object": "list", "data": data[::-1], "model": body.get("model"), "usage": usage})


def vector_of(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The double's embedding of `text`: numbers in [0, 1) from its SHA-256 (repeated past 32 dimensions)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[i % len(digest)] / 256 for i in range(dimensions)]


def _completion(body: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-double",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": choices,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _error(status: int, message: str, code: str) -> web.Response:
    headers = {"Retry-After": "3"} if status in (429, 503) else {}
    error = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return web.json_response(error, status=status, headers=headers)

"""The Flume seed's article-generator, unchanged, end to end with real parts: `knflow run` in a process of its
own; `https://api.example.com/topics` answered by a local HTTP server (KNFLOW_HTTP_CONNECT_TO, no internet
here); `llm-generate` by the OpenAI-compatible test double (no model can be served here); `mongodb-insert`
into the MongoDB wire-protocol server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

from aiohttp import web
from pymongo import MongoClient

from tests.doubles.openai_server import OpenAIServerDouble

ROOT = Path(__file__).resolve().parent.parent


async def test_the_seed_article_generator_runs_end_to_end(mongo_server, tmp_path):
    topic = f"Tides of the North Sea {uuid.uuid4().hex[:6]}"
    calls: list[str] = []

    async def topics(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"topic": topic})

    app = web.Application()
    app.router.add_get("/topics", topics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    api_url = f"http://{host}:{port}"
    llm = await OpenAIServerDouble().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KNFLOW_"))}
    env.update(
        KNFLOW_HTTP_CONNECT_TO=f"https://api.example.com={api_url}",
        KNFLOW_HTTP_ALLOW_NETS=f"{host}:{port}",  # the SSRF guard checks the connect-to target too
        KNFLOW_OPENAI_BASE_URL=llm.url,
        KNFLOW_MONGODB_URL=mongo_server.database_url("flume"),
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "knflow.cli",
            "run",
            str(ROOT / "examples/article-generator.yaml"),
            "--data",
            "{}",
            "--store",
            f"sqlite:///{tmp_path}/runs.db",
            "--json",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await llm.stop()
        await runner.cleanup()
    assert proc.returncode == 0, err.decode()
    run = json.loads(out)
    assert run["status"] == "succeeded" and calls == ["/topics"]
    [sent] = llm.requests
    assert sent["model"] == "llama3.1-70b" and sent["max_tokens"] == 4096  # from `variables.model` and `maxTokens`
    prompt = sent["messages"][-1]["content"]
    assert f"주제: {topic}\n" in prompt and "위 주제로 뉴스 기사를 작성하세요." in prompt
    article = run["nodes"]["generate-article"]["output"]
    assert article == f"echo: {prompt}"
    with MongoClient(mongo_server.url) as client:
        docs = list(client["flume"]["articles"].find({"title": topic}))
    assert len(docs) == 1 and docs[0]["content"] == article
    assert docs[0]["createdAt"].startswith("20") and run["nodes"]["save-article"]["status"] == "succeeded"

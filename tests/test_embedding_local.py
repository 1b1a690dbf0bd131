"""`embedding` with the local model (`model: local:all-MiniLM-L6-v2`, the `local-embedding` extra that
`make test` installs): real weights, run in-process, offline; and examples/embedding.yaml end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.handler import call
from functions.registry import REGISTRY
from functions.sdk import Context
from knflow.local import EmbeddedStack
from router.store.sqlite import SqliteStore
from router.loader import load

ROOT = Path(__file__).resolve().parent.parent
MODEL = "local:all-MiniLM-L6-v2"


async def embed(doc: dict) -> dict:
    ctx = Context(run_id="run-1", node_id="embed", attempt=1, pipeline="test", function="embedding")
    return await call(REGISTRY.get("embedding"), doc, ctx)


@pytest.fixture(autouse=True)
def no_server(monkeypatch):
    """The local model needs no server: none is configured."""
    for name in (
        "KNFLOW_OPENAI_BASE_URL",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "KNFLOW_OPENAI_API_KEY",
        "KNFLOW_OPENAI_EMBEDDING_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)


async def test_vectors_are_384_normalised_and_similar_texts_are_nearer():
    result = await embed(
        {
            "model": MODEL,
            "texts": [
                "A man is eating food.",
                "A man is eating a piece of bread.",
                "The stock market fell sharply today.",
            ],
        }
    )
    out = result["output"]
    assert out["model"] == "all-MiniLM-L6-v2" and out["dimensions"] == 384 and len(out["vectors"]) == 3
    eat, bread, market = out["vectors"]
    assert abs(sum(x * x for x in eat) - 1) < 1e-4

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(eat, bread) > 0.6 and cos(eat, market) < 0.2


async def test_one_text_and_the_environment_default(monkeypatch):
    monkeypatch.setenv("KNFLOW_OPENAI_EMBEDDING_MODEL", MODEL)
    out = (await embed({"texts": "hello"}))["output"]
    assert out["dimensions"] == 384 and len(out["vectors"]) == 1


@pytest.mark.parametrize(
    "doc, field, text",
    [
        (
            {"model": "local:no-such-model", "texts": ["x"]},
            "model",
            "unknown local model 'local:no-such-model'; the local models are: local:all-MiniLM-L6-v2",
        ),
        ({"model": MODEL, "texts": ["x"], "dimensions": 128}, "dimensions", "gives 384 dimensions, not 128"),
    ],
)
async def test_bad_input_names_the_field_and_is_not_retried(doc, field, text):
    result = await embed(doc)
    error = result["error"]
    assert error["type"] == "InvalidInput" and f"field '{field}'" in error["message"] and text in error["message"]
    assert error["detail"][0]["field"] == field


async def test_the_embedding_example_finds_the_nearest_document(tmp_path):
    p = load(ROOT / "examples/embedding.yaml")
    data = {
        "query": "How do I reset my password?",
        "documents": [
            "Our office opens at nine.",
            "To change your password, open Settings > Account.",
            "Invoices are sent monthly.",
        ],
    }
    async with EmbeddedStack(SqliteStore(tmp_path / "runs.db")) as stack:
        run = await stack.execute(p, data)
    assert run["status"] == "succeeded", run.get("error")
    nearest = run["nodes"]["nearest"]["output"]
    assert nearest["index"] == 1 and nearest["ranking"][0] == 1 and nearest["similarity"] > 0.5

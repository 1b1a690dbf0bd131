"""examples/media-pipeline.yaml (the Kubeflow seed's shape) end to end on the embedded default, its four
`llm-generate` replicas answered by the OpenAI-compatible test double."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from knflow.local import EmbeddedStack
from router.store.sqlite import SqliteStore
from router.loader import load
from tests.doubles.openai_server import OpenAIServerDouble

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples/media-pipeline.yaml"
TRANSCRIPT = "What a great and happy day at the beach, I love the calm sea"


@pytest.fixture
async def llm(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "KNFLOW_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    server = await OpenAIServerDouble().start()
    monkeypatch.setenv("KNFLOW_OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("KNFLOW_OPENAI_MODEL", "llama3")
    yield server
    await server.stop()


def test_the_example_validates():
    proc = subprocess.run(
        [sys.executable, "-m", "knflow.cli", "validate", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is valid (3 nodes, 2 edges)" in proc.stdout


async def test_transcript_sentiment_four_generations_then_pick(llm, tmp_path):
    p = load(EXAMPLE)
    assert p.nodes["generate"].replicas == 4
    async with EmbeddedStack(SqliteStore(tmp_path / "runs.db")) as stack:
        run = await stack.execute(p, {"transcript": TRANSCRIPT})
    assert run["status"] == "succeeded", run["error"]
    nodes = run["nodes"]
    assert nodes["sentiment"]["output"]["label"] == "positive"
    generated = nodes["generate"]["output"]
    assert len(generated) == 4 and [item["attempt"] for item in nodes["generate"]["items"].values()] == [1, 1, 1, 1]
    for i, text in enumerate(generated):
        assert (
            text.startswith("[system] echo: ")
            and f"Variation {i} of 4" in text
            and TRANSCRIPT in text
            and "mood is positive" in text
        )
    chats = [r for r in llm.requests if r.get("model") == "llama3"]
    assert sorted(r["seed"] for r in chats) == [0, 1, 2, 3] and {r["max_tokens"] for r in chats} == {256}
    assert nodes["pick"]["output"]["candidates"] == 4 and nodes["pick"]["output"]["text"] in generated

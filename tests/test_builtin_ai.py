"""`llm-generate`, `llm-chat` and `embedding` against a test double of an OpenAI-compatible server.

No model can be served on this machine: `tests/doubles/openai_server.py` speaks the wire format and
answers deterministically (see its docstring for the scripted models `status-NNN`, `slow`, `no-choices`).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from functions.builtins.ai import aclose_client
from functions.handler import Retryable, call
from functions.registry import REGISTRY
from functions.sdk import Context
from router.loader import load
from tests.doubles.openai_server import OpenAIServerDouble, vector_of

ROOT = Path(__file__).resolve().parent.parent
ENV_NAMES = (
    "KNFLOW_OPENAI_BASE_URL",
    "KNFLOW_OPENAI_API_KEY",
    "KNFLOW_OPENAI_MODEL",
    "KNFLOW_OPENAI_EMBEDDING_MODEL",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
)


async def run(function: str, doc: dict, node: str = "gen") -> dict:
    ctx = Context(run_id="run-1", node_id=node, attempt=1, pipeline="test", function=function)
    return await call(REGISTRY.get(function), doc, ctx)


def fields(result: dict) -> set[str]:
    return {problem["field"] for problem in result["error"]["detail"]}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Each test sees only the OPENAI variables it sets."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
async def llm():
    server = await OpenAIServerDouble().start()
    yield server
    await aclose_client()
    await server.stop()


@pytest.fixture
def refused_url():
    with socket.socket() as sock:  # bound, never listening: connections to it are refused
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


async def test_generate_output_is_the_bare_text(llm):
    result = await run("llm-generate", {"base_url": llm.url, "model": "llama3", "prompt": "write about cats"})
    assert result["output"] == "echo: write about cats"
    sent = llm.requests[-1]
    assert sent["model"] == "llama3" and sent["stream"] is False
    assert sent["messages"] == [{"role": "user", "content": "write about cats"}]


async def test_generate_accepts_the_seed_config_as_written(llm, monkeypatch):
    """The article-generator seed: `model` and `maxTokens` in config, `prompt` in inputs, server from the env."""
    monkeypatch.setenv("KNFLOW_OPENAI_BASE_URL", llm.url)
    result = await run("llm-generate", {"model": "llama3.1-70b", "maxTokens": 4096, "prompt": "주제: cats\n"})
    assert result["output"] == "echo: 주제: cats\n"
    assert llm.requests[-1]["max_tokens"] == 4096 and llm.requests[-1]["model"] == "llama3.1-70b"


async def test_generate_snake_case_options_and_system_prompt(llm):
    doc = {
        "baseUrl": llm.url,
        "model": "m",
        "prompt": "p",
        "system": "be brief",
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
    }
    assert (await run("llm-generate", doc))["output"] == "[system] echo: p"
    sent = llm.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert {k: sent[k] for k in ("max_tokens", "temperature", "top_p", "stop", "seed")} == {
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
    }


async def test_generate_stopped_at_max_tokens_still_returns_the_text(llm):
    assert (await run("llm-generate", {"base_url": llm.url, "model": "m", "prompt": "p", "maxTokens": 1}))[
        "output"
    ] == "echo: p"


async def test_model_and_key_from_the_environment(llm, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
    monkeypatch.setenv("KNFLOW_OPENAI_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert (await run("llm-generate", {"prompt": "p"}))["output"] == "echo: p"
    assert llm.requests[-1]["model"] == "env-model" and llm.requests[-1]["authorization"] == "Bearer sk-env"
    await run("llm-generate", {"prompt": "p", "base_url": llm.url + "/", "model": "m"})  # the same server
    assert llm.requests[-1]["authorization"] == "Bearer sk-env" and llm.requests[-1]["model"] == "m"
    monkeypatch.setenv("VLLM_API_KEY", "sk-config")
    await run("llm-generate", {"prompt": "p", "api_key_env": "VLLM_API_KEY", "model": "m"})
    assert llm.requests[-1]["authorization"] == "Bearer sk-config"


async def test_the_environment_key_is_never_sent_to_another_base_url(llm, monkeypatch):
    attacker = await OpenAIServerDouble().start()
    try:
        monkeypatch.setenv("KNFLOW_OPENAI_BASE_URL", llm.url)
        monkeypatch.setenv("KNFLOW_OPENAI_API_KEY", "sk-cluster-secret")
        assert (await run("llm-generate", {"base_url": attacker.url, "model": "m", "prompt": "p"}))["output"]
        assert attacker.requests[-1]["authorization"] == "Bearer none"  # no key: the double saw none
        for name in ("KNFLOW_OPENAI_API_KEY", "OPENAI_API_KEY"):  # naming the environment's key does not help
            result = await run("llm-generate", {"base_url": attacker.url, "api_key_env": name, "prompt": "p"})
            assert "api_key_env" in fields(result) and "key of the environment's server only" in str(result)
        for name in ("KNFLOW_ADMIN_TOKEN", "AWS_SECRET_ACCESS_KEY"):  # nor any secret that is not an API key
            result = await run("llm-generate", {"base_url": attacker.url, "api_key_env": name, "prompt": "p"})
            assert "api_key_env" in fields(result) and "ending in _API_KEY" in str(result)
        result = await run("llm-generate", {"base_url": attacker.url, "api_key": "sk-literal", "prompt": "p"})
        assert "api_key" in fields(result) and "a key is not written in a pipeline" in str(result)
        result = await run("llm-generate", {"base_url": attacker.url, "api_key_env": "UNSET_API_KEY", "prompt": "p"})
        assert "the environment variable UNSET_API_KEY is not set" in str(result)
        assert all("sk-cluster-secret" not in str(r["authorization"]) for r in attacker.requests)
    finally:
        await attacker.stop()


async def test_chat_answers_with_a_message(llm):
    doc = {
        "base_url": llm.url,
        "model": "m",
        "messages": [
            {"role": "system", "content": "you are terse"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "how are you?"},
        ],
    }
    assert (await run("llm-chat", doc))["output"] == {"role": "assistant", "content": "[system] echo: how are you?"}
    assert [m["role"] for m in llm.requests[-1]["messages"]] == ["system", "user", "assistant", "user"]


async def test_embedding_vectors_in_input_order(llm):
    result = await run("embedding", {"base_url": llm.url, "model": "e5", "texts": ["one", "two", "three"]})
    assert result["output"] == {
        "vectors": [vector_of(t) for t in ("one", "two", "three")],
        "model": "e5",
        "dimensions": 8,
    }


async def test_embedding_of_one_text_and_dimensions(llm, monkeypatch):
    monkeypatch.setenv("KNFLOW_OPENAI_BASE_URL", llm.url)
    monkeypatch.setenv("KNFLOW_OPENAI_EMBEDDING_MODEL", "env-embed")
    out = (await run("embedding", {"texts": "solo", "dimensions": 4}))["output"]
    assert out == {"vectors": [vector_of("solo", 4)], "model": "env-embed", "dimensions": 4}
    assert llm.requests[-1]["encoding_format"] == "float"


async def test_missing_server_and_model_fail_without_retry_naming_both():
    result = await run("llm-generate", {"prompt": "p"})
    error = result["error"]
    assert error["type"] == "InvalidInput" and fields(result) == {"base_url", "model"}
    assert error["message"].startswith("node 'gen' (function 'llm-generate'): field 'base_url': no server to call")
    assert "KNFLOW_OPENAI_BASE_URL" in error["message"] and "KNFLOW_OPENAI_MODEL" in error["message"]
    assert (
        "KNFLOW_OPENAI_EMBEDDING_MODEL"
        in (await run("embedding", {"texts": ["a"], "base_url": "http://x.test/v1"}))["error"]["message"]
    )


async def test_bad_base_url_in_the_environment_names_the_field(monkeypatch):
    monkeypatch.setenv("KNFLOW_OPENAI_BASE_URL", "vllm:8000")
    result = await run("llm-generate", {"prompt": "p", "model": "m"})
    assert fields(result) == {"base_url"} and "'vllm:8000' is not an absolute http(s) URL" in result["error"]["message"]


@pytest.mark.parametrize(
    "function, doc, field",
    [
        ("llm-generate", {"model": "m"}, "prompt"),
        ("llm-generate", {"prompt": ["a", "b"]}, "prompt"),
        ("llm-generate", {"prompt": ""}, "prompt"),
        ("llm-generate", {"prompt": "p", "maxTokens": "lots"}, "maxTokens"),
        ("llm-generate", {"prompt": "p", "max_tokens": 0}, "max_tokens"),
        ("llm-generate", {"prompt": "p", "temperature": 5}, "temperature"),
        ("llm-generate", {"prompt": "p", "timeout_s": "soon"}, "timeout_s"),
        ("llm-generate", {"prompt": "p", "base_url": "ftp://models"}, "base_url"),
        ("llm-generate", {"prompt": "p", "promt": "typo"}, "promt"),
        ("llm-chat", {"messages": "hello"}, "messages"),
        ("llm-chat", {"messages": []}, "messages"),
        ("llm-chat", {"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ("llm-chat", {"messages": [{"role": "user"}]}, "messages.0.content"),
        ("embedding", {}, "texts"),
        ("embedding", {"texts": []}, "texts"),
        ("embedding", {"texts": [{"a": 1}]}, "texts.0"),
        ("embedding", {"texts": ["a"], "dimensions": -1}, "dimensions"),
    ],
)
async def test_bad_input_names_the_field_without_retry(function, doc, field):
    result = await run(function, doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)
    assert f"field '{field}'" in result["error"]["message"]


async def test_bad_value_is_quoted_in_the_message():
    message = (await run("llm-generate", {"prompt": "p", "base_url": "ftp://models"}))["error"]["message"]
    assert "'ftp://models' is not an absolute http(s) URL" in message


@pytest.mark.parametrize(
    "function, doc",
    [
        ("llm-generate", {"prompt": "p"}),
        ("llm-chat", {"messages": [{"role": "user", "content": "x"}]}),
        ("embedding", {"texts": "x"}),
    ],
)
async def test_unreachable_server_is_retryable(function, doc, refused_url):
    with pytest.raises(Retryable) as info:
        await run(function, {**doc, "base_url": refused_url, "model": "m"})
    error = info.value.error
    assert error["type"] == "LlmUnreachable"
    assert f"with model 'm' at {refused_url} failed: Connection error." in error["message"]


@pytest.mark.parametrize("status", [429, 500, 503, 408])
async def test_429_and_5xx_are_retryable(llm, status):
    with pytest.raises(Retryable) as info:
        await run("llm-generate", {"base_url": llm.url, "model": f"status-{status}", "prompt": "p"})
    error = info.value.error
    assert error["type"] == "LlmStatus" and error["detail"]["status"] == status
    assert f"answered HTTP {status}: scripted failure for model status-{status}" in error["message"]
    if status in (429, 503):
        assert error["detail"]["retry_after"] == "3"


@pytest.mark.parametrize("function, doc", [("llm-generate", {"prompt": "p"}), ("embedding", {"texts": "x"})])
@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_4xx_fail_at_once_with_the_servers_message(llm, function, doc, status):
    error = (await run(function, {**doc, "base_url": llm.url, "model": f"status-{status}"}))["error"]
    assert error["type"] == "LlmStatus" and error["detail"]["status"] == status
    assert error["message"].endswith(f"at {llm.url} answered HTTP {status}: scripted failure for model status-{status}")


async def test_wrong_key_fails_at_once_without_showing_the_key_in_config(llm, monkeypatch):
    monkeypatch.setenv("WRONG_API_KEY", "wrong-key")
    error = (
        await run(
            "llm-chat",
            {
                "base_url": llm.url,
                "model": "m",
                "api_key_env": "WRONG_API_KEY",
                "messages": [{"role": "user", "content": "x"}],
            },
        )
    )["error"]
    assert error["detail"]["status"] == 401 and "Incorrect API key provided" in error["message"]


async def test_timeout_is_retryable(llm):
    llm.release.clear()
    try:
        with pytest.raises(Retryable) as info:
            await run("llm-generate", {"base_url": llm.url, "model": "slow", "prompt": "p", "timeout_s": 0.2})
    finally:
        llm.release.set()
    assert info.value.error["type"] == "LlmTimeout"
    assert info.value.error["message"].endswith(f"chat completion with model 'slow' at {llm.url} timed out after 0.2 s")


async def test_answer_without_choices_fails_at_once(llm):
    error = (await run("llm-generate", {"base_url": llm.url, "model": "no-choices", "prompt": "p"}))["error"]
    assert error["type"] == "LlmInvalidResponse" and "answered no choices" in error["message"]


async def test_clients_reopen_after_aclose(llm):
    await aclose_client()
    assert (await run("llm-generate", {"base_url": llm.url, "model": "m", "prompt": "again"}))[
        "output"
    ] == "echo: again"


def test_ai_functions_are_gpu_functions():
    for name in ("llm-generate", "llm-chat", "embedding"):
        spec = REGISTRY.get(name)
        assert spec.traits.gpu == 1 and spec.traits.retry.retries == 3


def test_seed_article_generator_validates():
    pipeline = load(ROOT / "examples" / "article-generator.yaml")
    assert [n.function for n in pipeline.nodes.values()] == ["http-request", "llm-generate", "mongodb-insert"]

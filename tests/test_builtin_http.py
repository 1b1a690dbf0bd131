"""`http-request` against a real HTTP server (aiohttp's, on a random port, in the test loop)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from functions.builtins.http import aclose_client
from functions.handler import Retryable, call
from functions.registry import REGISTRY
from functions.sdk import Context


async def run(doc: dict) -> dict:
    ctx = Context(run_id="run-1", node_id="fetch", attempt=1, pipeline="test", function="http-request")
    return await call(REGISTRY.get("http-request"), doc, ctx)


def fields(result: dict) -> set[str]:
    return {problem["field"] for problem in result["error"]["detail"]}


def fixed(make, *args, **kwargs):
    """A handler that always answers `make(*args, **kwargs)`."""

    async def handle(request: web.Request) -> web.Response:
        return make(*args, **kwargs)

    return handle


class Server:
    def __init__(self) -> None:
        self.release = asyncio.Event()  # lets /slow answer once a test has seen its timeout
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/topic", self.topic)
        app.router.add_post("/echo", self.echo)
        app.router.add_get("/text", fixed(web.Response, text="hello, world"))
        app.router.add_get("/empty", fixed(web.Response, status=204))
        app.router.add_get("/bad-json", fixed(web.Response, text="{not json", content_type="application/json"))
        app.router.add_get(
            "/problem", fixed(web.json_response, {"title": "x"}, content_type="application/problem+json")
        )
        app.router.add_get("/moved", self.moved)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/slow", self.slow)
        return app

    async def topic(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"topic": "cats", "query": dict(request.query), "x_test": request.headers.get("x-test")}
        )

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.content_type == "application/json":
            return web.json_response({"got": await request.json(), "content_type": request.content_type})
        return web.Response(text=f"got {body.decode()}")

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/topic")

    async def status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {"Retry-After": "7"} if code in (429, 503) else {}
        return web.Response(status=code, text=f"nope {code}", headers=headers)

    async def slow(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(text="late")


@pytest.fixture(scope="session", autouse=True)
async def shared_client():
    """The shared client is opened by the first request; close it when the session ends."""
    yield
    await aclose_client()


@pytest.fixture(scope="session")
async def server():
    srv = Server()
    runner = web.AppRunner(srv.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    srv.url = f"http://{host}:{port}"
    yield srv
    srv.release.set()
    await runner.cleanup()


async def test_get_json_body_is_the_output(server):
    result = await run({"url": f"{server.url}/topic", "params": {"page": 2, "q": "a b"}, "headers": {"X-Test": "yes"}})
    assert result["output"] == {"topic": "cats", "query": {"page": "2", "q": "a b"}, "x_test": "yes"}


async def test_post_json(server):
    result = await run({"method": "post", "url": f"{server.url}/echo", "json": {"title": "hi", "n": [1, 2.5]}})
    assert result["output"] == {"got": {"title": "hi", "n": [1, 2.5]}, "content_type": "application/json"}


async def test_post_text_body_and_text_response(server):
    result = await run({"method": "POST", "url": f"{server.url}/echo", "body": "plain words"})
    assert result["output"] == "got plain words"
    assert (await run({"url": f"{server.url}/text"}))["output"] == "hello, world"


async def test_output_full(server):
    result = await run({"url": f"{server.url}/text", "output": "full"})
    out = result["output"]
    assert out["status"] == 200 and out["body"] == "hello, world"
    assert out["headers"]["content-type"].startswith("text/plain")


async def test_json_suffix_media_type_is_parsed_and_empty_body_is_null(server):
    assert (await run({"url": f"{server.url}/problem"}))["output"] == {"title": "x"}
    assert (await run({"url": f"{server.url}/empty"}))["output"] is None


async def test_redirect_is_followed(server):
    assert (await run({"url": f"{server.url}/moved"}))["output"]["topic"] == "cats"


async def test_404_fails_without_retry_with_status_and_body(server):
    result = await run({"url": f"{server.url}/status/404?token=secret"})
    error = result["error"]
    assert error["type"] == "HttpStatus"
    assert error["detail"] == {"status": 404, "body": "nope 404"}
    assert f"GET {server.url}/status/404 answered HTTP 404 Not Found" in error["message"]
    assert "secret" not in error["message"]


async def test_error_status_is_returned_when_fail_on_status_is_false(server):
    result = await run({"url": f"{server.url}/status/404", "output": "full", "fail_on_status": False})
    assert result["output"]["status"] == 404 and result["output"]["body"] == "nope 404"


@pytest.mark.parametrize("code", [503, 500, 429, 408])
async def test_5xx_408_429_are_retryable(server, code):
    with pytest.raises(Retryable) as info:
        await run({"url": f"{server.url}/status/{code}"})
    error = info.value.error
    assert error["type"] == "HttpStatus" and error["detail"]["status"] == code
    assert f"answered HTTP {code}" in error["message"]
    if code in (429, 503):
        assert error["detail"]["retry_after"] == "7"


async def test_connection_refused_is_retryable():
    with socket.socket() as sock:  # bound, never listening: connections to it are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(Retryable) as info:
            await run({"url": f"http://127.0.0.1:{port}/x"})
    error = info.value.error
    assert error["type"] == "HttpUnreachable"
    assert f"GET http://127.0.0.1:{port}/x failed: " in error["message"]


async def test_timeout_is_retryable(server):
    try:
        with pytest.raises(Retryable) as info:
            await run({"url": f"{server.url}/slow", "timeout_s": 0.2})
    finally:
        server.release.set()
    assert info.value.error["type"] == "HttpUnreachable"
    assert info.value.error["message"].endswith(f"GET {server.url}/slow timed out after 0.2 s")


async def test_response_that_says_json_but_is_not_fails_without_retry(server):
    error = (await run({"url": f"{server.url}/bad-json"}))["error"]
    assert error["type"] == "HttpInvalidJson"
    assert "answered application/json but the body is not JSON" in error["message"]
    assert error["detail"]["body"] == "{not json"


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://example.com/x",
        "http://",
        "/relative/path",
        "http://host:99999/",
        "http://a..b/",
        "http://ho st/",
    ],
)
async def test_bad_url_names_the_field_and_the_value(url):
    error = (await run({"url": url}))["error"]
    assert error["type"] == "InvalidInput"
    assert "field 'url'" in error["message"] and repr(url) in error["message"]


@pytest.mark.parametrize(
    "doc, field",
    [
        ({}, "url"),
        ({"url": "http://x.test", "jsn": {}}, "jsn"),
        ({"url": "http://x.test", "timeout_s": "soon"}, "timeout_s"),
        ({"url": "http://x.test", "timeout_s": 0}, "timeout_s"),
        ({"url": "http://x.test", "method": "FETCH"}, "method"),
        ({"url": "http://x.test", "output": "headers"}, "output"),
        ({"url": "http://x.test", "headers": {"a": "b\r\nc: d"}}, "headers"),
        ({"url": "http://x.test", "body": {"a": 1}}, "body"),
        ({"url": "http://x.test", "json": {}, "body": "x"}, "(root)"),
    ],
)
async def test_bad_input_names_the_field(doc, field):
    result = await run(doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)


async def test_client_is_reopened_after_aclose(server):
    await aclose_client()
    assert (await run({"url": f"{server.url}/text"}))["output"] == "hello, world"


async def test_concurrent_requests_share_one_client(server):
    results = await asyncio.gather(*(run({"url": f"{server.url}/topic", "params": {"i": i}}) for i in range(50)))
    assert [r["output"]["query"]["i"] for r in results] == [str(i) for i in range(50)]


async def test_connect_to_sends_a_url_prefix_to_another_server(server, monkeypatch):
    monkeypatch.setenv(
        "KNFLOW_HTTP_CONNECT_TO", f"https://api.example.com={server.url}, https://other.example=http://127.0.0.1:9"
    )
    result = await run({"url": "https://api.example.com/topic?page=3"})
    assert result["output"]["topic"] == "cats" and result["output"]["query"] == {"page": "3"}
    with pytest.raises(Retryable, match=r"GET https://other.example/x \(via http://127.0.0.1:9/x\) failed"):
        await run({"url": "https://other.example/x", "timeout_s": 2})
    monkeypatch.setenv("KNFLOW_HTTP_CONNECT_TO", f"http://127.0.0.1:1={server.url}")
    with pytest.raises(Retryable, match=r"GET http://127.0.0.1:19/topic failed"):  # a longer port is not a match
        await run({"url": "http://127.0.0.1:19/topic", "timeout_s": 2})


async def test_a_malformed_connect_to_names_the_variable(monkeypatch):
    monkeypatch.setenv("KNFLOW_HTTP_CONNECT_TO", "api.example.com=127.0.0.1:8081")
    result = await run({"url": "https://api.example.com/topic"})
    assert result["error"]["type"] == "InvalidSetting"
    assert (
        "KNFLOW_HTTP_CONNECT_TO: 'api.example.com=127.0.0.1:8081' is not FROM=TO with two http(s) URLs"
        in result["error"]["message"]
    )


async def test_a_query_in_the_url_is_kept_without_params(server):
    result = await run({"url": f"{server.url}/topic?page=3&q=a+b"})
    assert result["output"]["query"] == {"page": "3", "q": "a b"}

"""`http-request` against a real HTTP server (aiohttp's, on a random port, in the test loop)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from functions.builtins import http
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
        self.stream_done = asyncio.Event()
        self.streamed = 0
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
        app.router.add_get("/host", self.host)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/loop", self.loop)
        app.router.add_get("/stream", self.stream)
        app.router.add_get("/declared", self.declared)
        app.router.add_get("/leak", self.leak)
        return app

    async def host(self, request: web.Request) -> web.Response:
        return web.json_response({"host": request.headers.get("host")})

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """64 MiB in 64 KiB chunks, no Content-Length; `streamed` counts what went out before the client left."""
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for _ in range(1024):
                await response.write(b"x" * 65536)
                self.streamed += 65536
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.stream_done.set()
        return response

    async def declared(self, request: web.Request) -> web.Response:
        return web.Response(body=b"y" * 5000)

    async def leak(self, request: web.Request) -> web.Response:
        page = (
            "<h1>Internal error</h1> db=mongodb://admin:hunter2@mongo:27017/app "
            "Authorization: Bearer tok-abcdef123456\n"
            'config {"api_key": "sk-live-0123456789abcdefXYZ", "password": "p4ss"} '
        )
        return web.Response(status=400, text=page + "z" * 2000)

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


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch):
    """The SSRF guard refuses loopback: these tests' servers are on 127.0.0.1, so the allow list opens it."""
    monkeypatch.setenv("KNFLOW_HTTP_ALLOW_NETS", "127.0.0.0/8")


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


def lookup_of(table: dict[str, list[str]]):
    """A resolver the test controls: a name resolves to what `table` says, and each lookup is counted."""
    calls: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError(f"{host} does not resolve")
        return table[host]

    lookup.calls = calls  # type: ignore[attr-defined]
    return lookup


def refused(result: dict) -> dict:
    error = result["error"]
    assert error["type"] == "HttpAddressRefused", error
    return error


async def test_loopback_is_refused_without_the_allow_list_and_reached_with_it(server, monkeypatch):
    monkeypatch.delenv("KNFLOW_HTTP_ALLOW_NETS")
    error = refused(await run({"url": f"{server.url}/text"}))
    assert error["detail"]["reason"] == "loopback"
    assert "refused by the SSRF guard" in error["message"] and "KNFLOW_HTTP_ALLOW_NETS" in error["message"]
    port = server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("KNFLOW_HTTP_ALLOW_NETS", f"127.0.0.1:{port}")  # host:port opens just that server
    assert (await run({"url": f"{server.url}/text"}))["output"] == "hello, world"


@pytest.mark.parametrize("host", ["[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]", "0.0.0.0", "[::]"])
async def test_ipv4_mapped_and_unspecified_loopback_are_refused_even_with_127_allowed(server, host):
    port = server.url.rsplit(":", 1)[1]
    error = refused(await run({"url": f"http://{host}:{port}/text"}))
    assert "loopback" in error["detail"]["reason"] or "unspecified" in error["detail"]["reason"]


async def test_internal_names_are_refused_before_any_lookup(monkeypatch):
    lookup = lookup_of({})
    monkeypatch.setattr(http, "lookup", lookup)
    for url in ("http://kubernetes.default.svc/api", "http://metadata.google.internal/computeMetadata/v1/"):
        assert refused(await run({"url": url}))["detail"]["reason"] in ("an internal name", "a cloud metadata name")
    assert lookup.calls == []


@pytest.mark.parametrize(
    "address, reason",
    [
        ("10.0.0.5", "private (RFC 1918)"),
        ("169.254.169.254", "a cloud metadata address"),
        ("100.64.0.9", "shared address space (CGNAT, 100.64.0.0/10)"),
        ("fd00:ec2::254", "a cloud metadata address"),
    ],
)
async def test_a_name_resolving_to_an_internal_address_is_refused_without_connecting(monkeypatch, address, reason):
    monkeypatch.setattr(http, "lookup", lookup_of({"api.example.com": [address]}))
    error = refused(await run({"url": "http://api.example.com/x", "timeout_s": 5}))
    assert error["detail"]["reason"] == reason and error["detail"]["address"] == address


async def test_the_connection_goes_to_the_checked_address_with_the_host_header_of_the_name(server, monkeypatch):
    lookup = lookup_of({"api.example.com": ["127.0.0.1"]})  # not in real DNS: only the checked address is dialled
    monkeypatch.setattr(http, "lookup", lookup)
    monkeypatch.setenv("KNFLOW_HTTP_CONNECT_TO", "")
    port = server.url.rsplit(":", 1)[1]
    await aclose_client()  # a fresh pool: this request must dial
    result = await run({"url": f"http://api.example.com:{port}/host"})
    assert result["output"] == {"host": f"api.example.com:{port}"}
    assert lookup.calls == ["api.example.com"]  # one lookup, checked, then used


async def test_a_redirect_to_a_forbidden_host_is_refused(server, monkeypatch):
    port = server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("KNFLOW_HTTP_ALLOW_NETS", f"127.0.0.1:{port}")
    monkeypatch.setattr(http, "lookup", lookup_of({"internal.example.com": ["10.0.0.5"]}))
    for to, reason in [
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://internal.example.com/admin", "private (RFC 1918)"),
        (f"http://127.0.0.2:{port}/text", "loopback"),
    ]:
        error = refused(await run({"url": f"{server.url}/redirect", "params": {"to": to}}))
        assert error["detail"]["reason"] == reason


async def test_too_many_redirects_fail(server):
    error = (await run({"url": f"{server.url}/loop"}))["error"]
    assert error["type"] == "HttpTooManyRedirects" and "redirected more than 10 times" in error["message"]


async def test_a_body_over_the_cap_is_refused_while_it_streams(server):
    result = await run({"url": f"{server.url}/stream", "max_response_bytes": 100_000})
    error = result["error"]
    assert error["type"] == "HttpResponseTooLarge"
    assert "more than the response cap of 100000 bytes" in error["message"]
    await asyncio.wait_for(server.stream_done.wait(), 10)
    assert server.streamed < 32 * 1024 * 1024  # the client left early; the server could not send its 64 MiB


async def test_a_declared_length_over_the_cap_is_refused_and_the_cap_comes_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("KNFLOW_HTTP_MAX_RESPONSE_BYTES", "4096")
    error = (await run({"url": f"{server.url}/declared"}))["error"]
    assert error["type"] == "HttpResponseTooLarge" and "Content-Length is 5000" in error["message"]
    error = (await run({"url": f"{server.url}/declared", "max_response_bytes": 10_000}))["error"]
    assert error["type"] == "InvalidInput" and "over this deployment's cap of 4096" in error["message"]
    assert (await run({"url": f"{server.url}/text", "max_response_bytes": 100}))["output"] == "hello, world"


async def test_an_error_body_excerpt_is_short_and_free_of_credentials(server):
    error = (await run({"url": f"{server.url}/leak"}))["error"]
    body = error["detail"]["body"]
    assert len(body) <= 200 and body.startswith("<h1>Internal error</h1>")
    for secret in ("hunter2", "tok-abcdef123456", "sk-live-0123456789abcdefXYZ", "p4ss"):
        assert secret not in body and secret not in error["message"]
    assert "mongodb://admin:****@mongo" in body


async def test_a_malformed_allow_list_names_the_variable(monkeypatch):
    monkeypatch.setenv("KNFLOW_HTTP_ALLOW_NETS", "api.internal")
    error = (await run({"url": "https://api.example.com/x"}))["error"]
    assert error["type"] == "InvalidSetting" and "KNFLOW_HTTP_ALLOW_NETS: 'api.internal'" in error["message"]

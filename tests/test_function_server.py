"""The function service (functions/server.py) on Starlette, in process: an invoke in binary mode answers
its reply, a wrong event 400, an unknown path or method the JSON FastAPI answered, and `/healthz`."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.testclient import TestClient

from broker import codec, events
from functions.server import create_app
from knflow import function


class Num(BaseModel):
    n: int


@function(name="fs-inc")
async def inc(inp: Num) -> Num:
    return Num(n=inp.n + 1)


def invoke(function_name: str = "fs-inc") -> tuple[dict[str, str], bytes]:
    ev = events.invoke_event(
        run_id="r1", pipeline="p", node="a", attempt=1, function=function_name, inputs={"n": 1}, config={}
    )
    return codec.encode_binary(ev)


def test_an_invoke_answers_its_reply_in_binary_mode():
    with TestClient(create_app(inc)) as client:
        headers, body = invoke()
        resp = client.post("/", content=body, headers=headers)
        assert resp.status_code == 200 and resp.headers["ce-type"] == events.NODE_SUCCEEDED
        reply = codec.decode(resp.headers, resp.content)
        assert reply.get_data()["output"] == {"n": 2}  # type: ignore[index]
        assert client.get("/healthz").json() == {"status": "ok", "function": "fs-inc"}


def test_an_invoke_of_another_function_is_400_naming_the_header():
    with TestClient(create_app(inc)) as client:
        headers, body = invoke("other")
        resp = client.post("/", content=body, headers=headers)
        assert resp.status_code == 400
        assert "the event asks for 'other' (header ce-knflowfunction)" in resp.text


def test_an_unknown_path_or_method_answers_json_detail():
    with TestClient(create_app(inc)) as client:
        assert (client.get("/nope").status_code, client.get("/nope").json()) == (404, {"detail": "Not Found"})
        resp = client.get("/")
        assert (resp.status_code, resp.json()) == (405, {"detail": "Method Not Allowed"})

"""knflow's errors as HTTP answers (broker/http_errors.py and the maps of both services): statuses along
the MRO, one body, typed fields on the errors themselves."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from broker.errors import InvalidEvent, KnflowError, NotACloudEvent, PayloadTooLarge
from broker.http_errors import BROKER_STATUSES, error_body, http_status
from functions.errors import UnknownFunction
from functions.server import FUNCTION_STATUSES
from router.hops import HopLimit
from router.pipeline import PipelineInvalid, Problem
from router.replay import InvalidDuration, ReplayRefused, parse_duration_s
from router.router import UnknownPipeline
from router.service.errors import ROUTER_STATUSES, Unauthorized
from router.store.base import RunExists, RunNotFound, RunUnreadable


@pytest.mark.parametrize(
    "error,status",
    [
        (KnflowError("x"), 500),
        (InvalidEvent("x"), 400),
        (NotACloudEvent("x"), 400),
        (PayloadTooLarge("x"), 413),
        (UnknownFunction("x"), 404),
        (Unauthorized("x"), 401),
        (UnknownPipeline("x"), 404),
        (RunNotFound("x"), 404),
        (RunExists("x"), 409),
        (RunUnreadable("x"), 503),
        (ReplayRefused("x"), 409),
        (InvalidDuration("x"), 400),
        (HopLimit("x"), 422),
        (PipelineInvalid([]), 422),
    ],
)
def test_the_router_maps_each_error_once(error, status):
    assert http_status(error, ROUTER_STATUSES) == status


def test_a_subclass_answers_as_its_nearest_mapped_base():
    class Gone(RunNotFound):
        pass

    class Odd(KnflowError):
        pass

    assert http_status(Gone("x"), ROUTER_STATUSES) == 404
    assert http_status(Odd("x"), ROUTER_STATUSES) == 500
    assert http_status(ValueError("x"), BROKER_STATUSES) == 500


def test_each_service_map_extends_the_one_below():
    assert BROKER_STATUSES.items() <= FUNCTION_STATUSES.items() <= ROUTER_STATUSES.items()


def test_no_error_class_says_its_own_http_status():
    for package in ("broker", "functions", "router", "knative", "knflow"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            if info.name.startswith(("functions.builtins.", "knflow.cli")):
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, KnflowError):
                    assert "http_status" not in vars(value), f"{value.__module__}.{value.__name__}"


def test_errors_carry_named_fields_and_the_body_shows_them():
    err = RunNotFound("run 'r1' not found", run_id="r1")
    assert err.run_id == "r1" and err.fields == {"run_id": "r1"}
    assert error_body(err) == {"error": "run 'r1' not found", "run_id": "r1"}
    assert UnknownPipeline("unknown pipeline 'p'", pipeline="p").pipeline == "p"
    assert KnflowError("plain", anything=1, nothing=None).fields == {"anything": 1}
    with pytest.raises(InvalidDuration) as bad:
        parse_duration_s("banana")
    assert bad.value.value == "banana" and http_status(bad.value, ROUTER_STATUSES) == 400


def test_the_body_lists_problems_one_line_each():
    problems = [Problem("is wrong", file="a.yaml", line=3, pipeline="p", node="n", field="f")]
    body = error_body(PipelineInvalid(problems))
    assert body["problems"] == [str(problems[0])] and body["pipeline"] == "p"

"""Settings fail fast: a bad `KNFLOW_*` value stops every command at its start, before any work, with one line
naming the variable and the form it takes (no traceback, nothing started); a near miss of a setting's name
gets a warning instead of being ignored in silence. Each command runs in its own process (`python -m knflow.cli`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from knflow.settings import near_misses

ROOT = Path(__file__).resolve().parent.parent
HELLO = str(ROOT / "examples" / "hello.yaml")
# every command a user starts; each would do work (or start a server) past the settings
COMMANDS = [
    ["validate", HELLO],
    ["run", HELLO, "--input", '{"text": "a b"}'],
    ["runs", "list", "--store", "sqlite:///never.db"],
    ["manifests", HELLO, "--out", "never"],
    ["serve", "router", "--port", "0"],
    ["serve", "function", "echo"],
    ["serve", "dispatcher", "--function", "echo", "--dead-letter", "dlq"],
    ["dev", HELLO],
]
BAD = [  # variable, value, what the message must say
    ("KNFLOW_MAX_BODY_BYTES", "abc", "KNFLOW_MAX_BODY_BYTES has value 'abc': Input should be a valid integer"),
    ("KNFLOW_SWEEP_INTERVAL_S", "-5", "KNFLOW_SWEEP_INTERVAL_S has value '-5': Input should be greater than 0"),
    ("KNFLOW_METRICS", "maybe", "KNFLOW_METRICS has value 'maybe': Input should be a valid boolean"),
    ("KNFLOW_HTTP_ALLOW_NETS", "10.0.0.0/8,not a net", "KNFLOW_HTTP_ALLOW_NETS: 'not a net' is neither a CIDR"),
    ("PORT", "eighty", "PORT has value 'eighty': Input should be a valid integer"),
]


def knflow(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KNFLOW_") and k != "PORT"}
    return subprocess.run(
        [sys.executable, "-m", "knflow.cli", *args],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]).replace(HELLO, "FILE"))
def test_every_command_stops_at_a_bad_setting_naming_it(args, tmp_path):
    for variable, value, expected in BAD:
        done = knflow(args, {variable: value}, tmp_path)
        assert done.returncode == 1, (variable, done.stdout, done.stderr)
        assert expected in done.stderr, (variable, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == "", (variable, done.stdout, done.stderr)
    assert list(tmp_path.iterdir()) == []  # nothing was started or written: no store, no manifests


def test_a_setting_that_no_value_can_break_still_runs_the_command(tmp_path):
    done = knflow(["validate", HELLO], {"KNFLOW_SWEEP_INTERVAL_S": "0.5", "KNFLOW_METRICS": "off"}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pipeline 'hello' is valid" in done.stdout and "warning" not in done.stderr


def test_a_near_miss_of_a_name_is_a_warning_and_the_command_goes_on(tmp_path):
    done = knflow(["validate", HELLO], {"KNFLOW_SWEEP_INTERVAL": "5"}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        "knflow: warning: KNFLOW_SWEEP_INTERVAL is not a knflow setting and is ignored; "
        "did you mean KNFLOW_SWEEP_INTERVAL_S?"
    ) in done.stderr


def test_near_misses_know_the_builtins_variables_and_leave_far_names_alone():
    environ = {
        "KNFLOW_MONGODB_URL": "mongodb://x",  # a builtin's, not Settings'
        "KNFLOW_TOKEN": "t",  # the client's
        "KNFLOW_TEST_MONGODB_URL": "mongodb://y",  # the tests'
        "KNFLOW_MY_HOOK_SECRET": "s",  # a pipeline's webhook secret may have any name
        "KNFLOW_STORE": "sqlite:///x.db",
        "KNFLOW_ADMIN_TOKN": "t",
    }
    assert near_misses(environ) == [
        "KNFLOW_ADMIN_TOKN is not a knflow setting and is ignored; did you mean KNFLOW_ADMIN_TOKEN?",
        "KNFLOW_STORE is not a knflow setting and is ignored; did you mean KNFLOW_STORE_URL?",
    ]

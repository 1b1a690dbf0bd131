"""The dashboard's source (ui/) against what the package ships (router/ui/): `npm ci` (once: ui/node_modules,
the Makefile's stamp), then `vite build` into a temporary folder must give the committed files byte for byte;
and the UI's own Vitest tests pass. Both need node and npm (Debian's nodejs and npm, which `make` installs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UI = ROOT / "ui"
BUILT = ROOT / "router" / "ui"
STAMP = UI / "node_modules" / ".installed"


def npm(*args: str, env: dict[str, str] | None = None, timeout_s: float = 240) -> str:
    if shutil.which("npm") is None:
        pytest.fail("the dashboard's tests need npm and node: apt-get install nodejs npm (make does)")
    done = subprocess.run(
        ["npm", *args], cwd=UI, capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def node_modules() -> None:
    """`npm ci` unless ui/node_modules is as the lockfile says (the stamp is newer than the lockfile)."""
    lock = UI / "package-lock.json"
    if not STAMP.exists() or STAMP.stat().st_mtime < lock.stat().st_mtime:
        npm("ci", "--no-audit", "--no-fund")
        STAMP.touch()


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.timeout(300)
def test_the_committed_build_is_what_the_source_builds(node_modules, tmp_path):
    out = tmp_path / "ui"
    npm("run", "build", env={"KNFLOW_UI_OUT": str(out)})
    built, committed = files(out), files(BUILT)
    assert sorted(built) == sorted(committed), "router/ui/ is not the current build of ui/: run `make ui` and commit"
    stale = [name for name in built if built[name] != committed[name]]
    assert not stale, f"router/ui/ differs from the build of ui/ in {stale}: run `make ui` and commit"
    assert (BUILT / "index.html").read_text().count("/ui/assets/") >= 2


@pytest.mark.timeout(300)
def test_the_ui_unit_tests_pass(node_modules):
    out = npm("test")
    assert " passed" in out and "failed" not in out.split("Tests")[-1], out[-3000:]

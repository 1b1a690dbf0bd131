"""The names users import from `knflow`, pinned, and `import knflow` staying light."""

import subprocess
import sys

import knflow


def test_public_exports_are_pinned():
    assert sorted(knflow.__all__) == [
        "Context",
        "FunctionError",
        "FunctionSpec",
        "KnflowError",
        "Pipeline",
        "PipelineInvalid",
        "Retry",
        "RunHandle",
        "Storage",
        "execute_run",
        "function",
        "load_pipeline",
        "pipeline",
        "start_run",
    ]
    assert issubclass(knflow.FunctionError, knflow.KnflowError)
    assert issubclass(knflow.PipelineInvalid, knflow.KnflowError)


def test_import_knflow_loads_no_server_libraries():
    code = (
        "import sys, knflow; print(','.join(m for m in ('fastapi', 'uvicorn', 'pymongo', 'nats', 'kubernetes', "
        "'httpx', 'cel', 'aiohttp', 'fsspec', 'orjson') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_the_packages_ship_py_typed():
    from importlib.resources import files

    for package in ("knflow", "functions", "broker", "router", "knative"):
        assert files(package).joinpath("py.typed").is_file(), package

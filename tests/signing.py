"""Results and dead letters a test builds by hand carry their invoke's `knflowtoken`, as a function's would:
`sign(headers)` adds it under the router's result key (`RESULT_KEY`, the `KNFLOW_RESULT_KEY` of the routers
tests start, or the key a router took from its store)."""

from __future__ import annotations

from broker import extensions as ext
from router.result_keys import ResultKey

RESULT_KEY = "tests-only-result-key-0123456789abcdef"  # KNFLOW_RESULT_KEY of the test routers that set one


def sign(headers: dict[str, str], key: ResultKey | str = RESULT_KEY) -> dict[str, str]:
    """`headers` (binary mode: ce-knflowrun, ce-knflownode, ce-knflowattempt) with the invoke's token."""
    signer = key if isinstance(key, ResultKey) else ResultKey(key)
    invoke_id = f"{headers['ce-knflowrun']}:{headers['ce-knflownode']}:{headers['ce-knflowattempt']}"
    return {**headers, f"ce-{ext.TOKEN}": signer.token(invoke_id)}

"""FlowHub's `my-workflow` in knflow's Python DSL: step1 -> step2, a failure handler, variables per environment.

    knflow run examples/my_workflow.py --data '{"name": "demo"}'                 # the default environment
    knflow run examples/my_workflow.py --env prod --data '{"name": "demo"}'      # prod's variables over default's
    knflow run examples/my_workflow.py --data '{"name": "demo", "fail": true}'  # step2 raises: fail_handler runs
    knflow export examples/my_workflow.py                                        # the same pipeline as YAML

FlowHub's `@flow(env={...})` is `@pipeline(variables={...})`: the `default` section and one per environment
(router/environments.py); a function reads them from its input, filled from `{{ variables.X }}`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from knflow import Context, function, pipeline


class Args(BaseModel):
    args: dict[str, Any]  # the trigger's data, FlowHub's `args`
    workspace: str
    debug: bool = False


class Step1Out(BaseModel):
    args: dict[str, Any]
    workspace: str
    step1_result: str


class Step2Out(BaseModel):
    args: dict[str, Any]
    step1_result: str
    step2_result: str
    bucket: str


class FailedRun(BaseModel):
    """What a pipeline's on_failure handler receives (router/engine.py)."""

    run_id: str
    pipeline: str
    failed_node: str
    error: dict[str, Any]
    traceback: str | None = None
    trigger: Any = None


class Handled(BaseModel):
    failed_node: str
    message: str
    exception: str | None  # the traceback's last line


@function(cpu="1", memory="1Gi", timeout_s=30)
async def step1(inp: Args, ctx: Context) -> Step1Out:
    ctx.log.info("step 1", workspace=inp.workspace, debug=inp.debug)
    return Step1Out(args=inp.args, workspace=inp.workspace, step1_result="done")


class Step2In(BaseModel):
    args: dict[str, Any]
    step1_result: str
    bucket: str


@function(cpu="2", memory="2Gi", timeout_s=30)
async def step2(inp: Step2In, ctx: Context) -> Step2Out:
    ctx.log.info("step 2", step1_result=inp.step1_result)
    if inp.args.get("fail"):
        raise RuntimeError(f"step2 was asked to fail (bucket {inp.bucket})")
    return Step2Out(args=inp.args, step1_result=inp.step1_result, step2_result="done", bucket=inp.bucket)


@function(timeout_s=30)
async def fail_handler(inp: FailedRun, ctx: Context) -> Handled:
    """Called once when the run fails, with the failed node's error and traceback."""
    last = (inp.traceback or "").strip().splitlines()[-1:]  # the exception line; the whole traceback is in `inp`
    exception = last[0] if last else None
    ctx.log.error("run failed", node=inp.failed_node, exception=exception)
    return Handled(failed_node=inp.failed_node, message=inp.error.get("message", ""), exception=exception)


@pipeline(
    name="my-workflow",
    description="FlowHub's sample workflow: step1 -> step2",
    variables={
        "default": {"WORKSPACE": "./tmp", "DEBUG": True, "BUCKET": "local-bucket"},
        "prod": {"WORKSPACE": "/data", "DEBUG": False, "BUCKET": "my-bucket", "REGION_NAME": "ap-northeast-2"},
    },
    on_failure=fail_handler,
)
def my_workflow(data: Any, variables: Any) -> Any:
    first = step1(args=data, workspace=variables.WORKSPACE, debug=variables.DEBUG)
    return step2(args=first.args, step1_result=first.step1_result, bucket=variables.BUCKET)

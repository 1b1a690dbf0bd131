"""The names of the CloudEvent extension attributes knflow reads and writes: the one place they are spelled.

| name | on | meaning |
|---|---|---|
| `knflowfunction` | invoke, result | the function to run: the Knative Trigger filter key |
| `knflowrun` | all | run id |
| `knflownode` | invoke, result | node id within the pipeline (`gen[2]` for an item of a fan-out) |
| `knflowattempt` | invoke, result | attempt number, from 1 |
| `knflowpipeline` | all | pipeline name |
| `knflowdelivery` | invoke, result | the broker's delivery of this attempt: 2, 3 ... on a retry |
| `knflowhops` | run events | how many pipelines deep the chain that led here is |
| `knflowretry` | invoke | the node's own retry policy, a JSON object (`broker.retry.Retry`) |
| `knflowtimeout` | invoke | the node's own timeout in seconds |
| `knflowtoken` | invoke, result | the invoke's result secret (router/result_keys.py); its result carries it back |
| `traceparent` | all | W3C trace context (the CloudEvents distributed-tracing extension; broker/tracing.py) |
| `tracestate` | all | its vendor state, when a tracer keeps one |
| `knativeerrordest` | dead letters | Knative's: the subscriber that failed |
| `knativeerrorcode` | dead letters | Knative's: its last HTTP status |
| `knativeerrordata` | dead letters | Knative's: base64 of its last response body (at most 1,024 characters) |

Extension names are lowercase letters and digits only (CloudEvents 1.0), so each is also an HTTP header
`ce-NAME` in binary mode.
"""

from __future__ import annotations

from typing import Final

FUNCTION: Final = "knflowfunction"
RUN: Final = "knflowrun"
NODE: Final = "knflownode"
ATTEMPT: Final = "knflowattempt"
PIPELINE: Final = "knflowpipeline"
DELIVERY: Final = "knflowdelivery"
HOPS: Final = "knflowhops"
RETRY: Final = "knflowretry"
TIMEOUT: Final = "knflowtimeout"
TOKEN: Final = "knflowtoken"
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
TRACE_CONTEXT: Final = (TRACEPARENT, TRACESTATE)

ERROR_DEST: Final = "knativeerrordest"
ERROR_CODE: Final = "knativeerrorcode"
ERROR_DATA: Final = "knativeerrordata"

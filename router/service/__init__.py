"""The router as an HTTP service (`knflow serve router`): thin handlers over the router and the store.

    POST /events            any CloudEvent: node results advance runs (node.logs: a try's lines are stored);
                            other types start the runs of the pipelines whose trigger matches them.
                            202 {"id", "runs"}                                             ingress.py
                            (a result without its invoke's knflowtoken: 403, nothing changes)
    POST /events/replay     the external events the broker kept: {"since": "2h", "type"}   ingress.py
    POST /dead-letter       invokes whose retries ran out: the node fails with the reason ingress.py
                            (the invoke's knflowtoken checked as for results)
    POST /hooks/{pipeline}  webhook: the JSON body is the trigger's data. 202 {"run"}      hooks.py
    POST /runs/{id}/replay  redrive in place ({"from": NODE}) or re-run ({"new_run": true}); /runs/{id}/cancel
    POST /replay            bulk: {"pipeline", "status", "since": "2h", "new_run"}
    GET  /runs, /runs/{id}                                                                 runs.py
    GET  /runs/{id}/logs    node log lines: ?node=&attempt=&after=SEQ&limit=              logs.py
    GET|PUT|DELETE /pipelines/{name}; GET /pipelines                                       pipelines.py
    GET  /healthz                                                                          app.py
    GET  /metrics           Prometheus' text format (a `read` token or KNFLOW_METRICS_TOKEN) metrics.py

A broker-ingress router (`create_app(..., broker_ingress=True)`, `knflow serve router --broker-ingress`,
the cluster-local Service Knative's broker delivers to) serves only /events, /dead-letter, /healthz and /metrics, and
takes external events without a token; every other path is a 404.

`create_app` (app.py) wires them; each handler gets the router, the catalog and the limits from
`context.Service`. Errors are `KnflowError`s, mapped to HTTP statuses once (errors.py). A 202 is a
promise: it is sent only after the run (with its trigger event) is stored.
"""

from __future__ import annotations

from router.service.app import create_app

__all__ = ["create_app"]

"""Pure: what the router's OpenAPI document (`GET /openapi.json`) says about the bodies its routes read
themselves (`Service.read_body` / `json_body`, which FastAPI cannot see) and about its error answers.

Documentation only: the handlers check every field as router/service/params.py says, whatever the document
says. Each route passes its entry to FastAPI as `openapi_extra=`; `ERROR_RESPONSES` is every route's
`default` response (the one body of broker/http_errors.py `error_body`).
"""

from __future__ import annotations

from typing import Any, Final

from router.runs import RUN_STATES
from router.tokens import SCOPES

JSON: Final = "application/json"

ERROR_BODY: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, naming the field or header"},
        "problems": {"type": "array", "items": {"type": "string"}, "description": "each problem of a pipeline"},
        "scope": {"type": "string", "description": "the scope a 401 or 403 needed"},
        "field": {"type": "string"},
    },
    "additionalProperties": True,
}
ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    "default": {"description": "An error: `{error, ...}`", "content": {JSON: {"schema": ERROR_BODY}}}
}

_DURATION: Final = {"type": "string", "description": "a window such as 90s, 30m, 2h or 7d", "examples": ["2h"]}
_TEXT: Final = {"type": "string", "minLength": 1, "maxLength": 1024}
_STATUS: Final = {"type": "string", "enum": list(RUN_STATES)}


def _json_body(properties: dict[str, Any], *, required: tuple[str, ...] = (), optional_body: bool = True) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": True}
    if required:
        schema["required"] = list(required)
    return {"requestBody": {"required": not optional_body, "content": {JSON: {"schema": schema}}}}


CLOUDEVENT: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1},
        "type": {"type": "string", "minLength": 1},
        "subject": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"type": "string", "enum": [JSON]},
        "data": {},
    },
    "additionalProperties": True,
}
_CE_HEADERS: Final = [
    {"name": f"ce-{attribute}", "in": "header", "required": False, "schema": {"type": "string"}}
    for attribute in ("specversion", "id", "source", "type")
]
# POST /events and /dead-letter: a CloudEvent, structured (the whole event as JSON) or binary (ce-* headers, the
# data as the body)
EVENT: Final[dict[str, Any]] = {
    "parameters": _CE_HEADERS,
    "requestBody": {
        "required": True,
        "content": {"application/cloudevents+json": {"schema": CLOUDEVENT}, JSON: {"schema": {}}},
    },
}
RUN_DATA: Final = _json_body({})  # POST /pipelines/{name}/runs: the trigger's data, an object
WEBHOOK: Final = {  # the body is the trigger's data
    "requestBody": {"required": False, "content": {JSON: {"schema": {}}}},
    "responses": {
        "202": {"description": "`{run}`: the run started (`respond: async`, the default)"},
        "200": {
            "description": "`respond: sync`: the http-response node's status, headers and body, else the run's "
            "output; a failed run is a 500 `{run, status, error, node}`; header `Knflow-Run` names the run"
        },
        "409": {"description": "the pipeline is paused or a draft: `{error, pipeline, status}`"},
        "504": {"description": "`respond: sync` past the trigger's timeout_s: `{run, status, error, poll}`"},
    },
}
EVENT_REPLAY: Final = _json_body({"since": _DURATION, "type": _TEXT}, required=("since",), optional_body=False)
RUN_REPLAY: Final = _json_body(
    {
        "from": _TEXT,
        "new_run": {"type": "boolean"},
        "by": _TEXT,
        "data": {"description": "with new_run: the new run's trigger data, in place of the stored one's"},
    }
)
RUN_CANCEL: Final = _json_body({"by": _TEXT})
BULK_REPLAY: Final = _json_body(
    {
        "pipeline": _TEXT,
        "status": _STATUS,
        "since": _DURATION,
        "new_run": {"type": "boolean"},
        "by": _TEXT,
        "limit": {"type": "integer", "minimum": 1},
    }
)
NEW_TOKEN: Final = _json_body(
    {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
        "scope": {"type": "string", "enum": list(SCOPES)},
    },
    required=("name", "scope"),
    optional_body=False,
)
PIPELINE: Final = {  # YAML text, or the same document as JSON
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["metadata", "nodes"],
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}},
                        },
                        "trigger": {"type": "object"},
                        "nodes": {"type": "array", "items": {"type": "object"}},
                    },
                }
            },
        },
    }
}
_LOG_LINE: Final = {
    "type": "object",
    "required": ["node", "attempt", "seq", "at", "stream", "level", "message", "fields"],
    "properties": {
        "node": {"type": "string", "description": "the node, or a fan-out item's key such as gen[3]"},
        "attempt": {"type": "integer"},
        "seq": {"type": "integer", "description": "counts the run's stored lines: increases in every attempt"},
        "at": {"type": "string", "description": "RFC 3339, the function's clock"},
        "stream": {"type": "string", "enum": ["log", "stdout", "stderr"]},
        "level": {"type": ["string", "null"], "description": "ctx.log's level; null for stdout and stderr"},
        "message": {"type": "string"},
        "fields": {"type": ["object", "null"], "description": "ctx.log's key/values, secrets masked"},
    },
}
RUN_LOGS: Final = {  # GET /runs/{id}/logs (router/service/logs.py)
    "responses": {
        "200": {
            "description": "The lines after `after`, by seq",
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "required": ["run_id", "lines", "truncated", "next_after"],
                        "properties": {
                            "run_id": {"type": "string"},
                            "lines": {"type": "array", "items": _LOG_LINE},
                            "truncated": {
                                "type": "object",
                                "additionalProperties": {"type": "integer"},
                                "description": "lines each try dropped past its bounds, by NODE:ATTEMPT",
                            },
                            "next_after": {"type": "integer", "description": "ask again with after=this"},
                        },
                    }
                }
            },
        }
    }
}
# POST /pipelines/validate: the same body as PUT, and every problem with its place
PROBLEM: Final = {
    "type": "object",
    "required": ["message", "text"],
    "properties": {
        "message": {"type": "string"},
        "text": {"type": "string", "description": "the problem as `knflow validate` prints it"},
        "line": {"type": ["integer", "null"], "description": "1-based, when the draft came as YAML"},
        "node": {"type": ["string", "null"]},
        "field": {"type": ["string", "null"], "description": "such as inputs.url or edges[1].when"},
        "edge": {"type": "object", "description": "the edge a problem names: index, from, to"},
    },
}
PIPELINE_VALIDATE: Final = {
    **PIPELINE,
    "responses": {
        "200": {
            "description": "Whether the draft is valid, and each problem",
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "required": ["valid", "problems"],
                        "properties": {
                            "valid": {"type": "boolean"},
                            "pipeline": {"type": ["string", "null"]},
                            "problems": {"type": "array", "items": PROBLEM},
                        },
                    }
                }
            },
        }
    },
}
# GET /runs/stream and /runs/{id}/stream (router/service/streams.py): Server-Sent Events
EVENT_STREAM: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "Server-Sent Events (`event:`, `id:`, `data:` one line of JSON), heartbeats as comments",
        "content": {
            "text/event-stream": {
                "schema": {  # one event, as OpenAPI 3.2 describes an event stream's items
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "event": {"type": "string", "enum": ["run", "end", "runs", "counts"]},
                        "data": {"type": "string", "contentMediaType": "application/json"},
                        "id": {"type": "string"},
                        "retry": {"type": "integer"},
                    },
                }
            }
        },
    }
}

"""Builtin functions: the node types every pipeline can use without writing code.

| module        | functions                  |
|---------------|----------------------------|
| `http`        | `http-request`             |
| `http_response` | `http-response` (a synchronous webhook's answer) |
| `transform`   | `json-transform`, `template` |
| `logic`       | `condition`, `switch`      |
| `utility`     | `delay`, `log`, `error`    |

Each module is imported on the first lookup of one of its names (`functions.registry.BUILTINS`), so a
function's container loads httpx or jmespath only when it serves a function that needs them. Builtins
receive plain values: the router renders a node's `{{ ... }}` templates before the invoke.
"""

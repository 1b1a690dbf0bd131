"""How a JSON value reads inside text: the one rule templates and the `template` builtin share."""

from __future__ import annotations

import json
from typing import Any


def as_text(value: Any) -> str:
    """Strings as they are, null as "", booleans as true/false, objects and lists as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)

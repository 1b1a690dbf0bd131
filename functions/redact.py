"""Pure: a short, credential-free excerpt of text from elsewhere (an error page, a server's message).

What is removed: the password of a URL (`scheme://user:***@host`), the value of `Authorization`-like
headers and `Bearer`/`Basic` credentials, `key=value` / `"key": "value"` pairs whose key names a secret
(password, token, secret, api_key, ...), and strings shaped like API keys (`sk-...`, `ghp_...`, JWTs).
"""

from __future__ import annotations

import re

EXCERPT_CHARS = 200
SCAN_CHARS = 4000  # redact this much, then cut: a secret across the cut is already gone
MASK = "***"

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*):[^\s/@]*@")
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-auth-token|cookie|set-cookie)(\s*[:=]\s*)[^\r\n]+"
)
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic|token|digest)\s+[A-Za-z0-9._~+/=-]{6,}")
_SECRET_PAIR = re.compile(
    r"""(?ix)
    (["']?\b[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|credential|session)[\w-]*["']?)
    (\s*[:=]\s*)
    ("[^"]*"|'[^']*'|[^\s,;&}"']+)
    """
)
_KEY_SHAPES = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)


def redact(text: str) -> str:
    """`text` with credentials masked (see the module docstring)."""
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _AUTH_HEADER.sub(rf"\1\2{MASK}", text)
    text = _SCHEME_CREDENTIAL.sub(rf"\1 {MASK}", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m[1]}{m[2]}{_masked_value(m[3])}", text)
    return _KEY_SHAPES.sub(MASK, text)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of `text`, credentials masked, at most `limit` characters (an ellipsis marks a cut)."""
    clean = redact(text[:SCAN_CHARS])
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _masked_value(value: str) -> str:
    quote = value[0] if value[:1] in ('"', "'") else ""
    return f"{quote}{MASK}{quote}"

"""Secrets out of what knflow prints and logs: URLs with their passwords masked. Pure.

    mask_url("mongodb://app:s3cret@mongo:27017/knflow")   # 'mongodb://app:****@mongo:27017/knflow'
    mask_url("nats://TOKEN@nats:4222")                    # 'nats://****@nats:4222' (a lone user part is a token)
    mask_url("https://h/x?token=abc&page=2")              # 'https://h/x?token=****&page=2'
    redact("cannot open mongodb://app:s3cret@mongo/db")   # every URL in a text, masked the same way

Every place that shows a URL that may hold credentials (the `knflow dev` and `knflow serve` banners, store,
blob, NATS and sink errors, settings errors and `repr(Settings())`, log lines) goes through these two.
The host, port, path and the other query parameters stay, so a reader can still tell which server it was.

Text from elsewhere (an error page, a server's message) that goes into a node's error is cut to a short
`excerpt`, after `redact_credentials` has also masked `Authorization`-like headers, `Bearer`/`Basic`
credentials, `key=value` / `"key": "value"` pairs whose key names a secret (password, token, secret,
api_key, ...) and strings shaped like API keys (`sk-...`, `ghp_...`, JWTs).
"""

from __future__ import annotations

import re

MASK = "****"
# query parameters whose value is a credential (AWS and Azure signed URLs, API keys, passwords, tokens)
SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|sig|credential|auth(?!source|mechanism)", re.IGNORECASE)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#]+)=(?P<value>[^&;#]*)")


def mask_url(url: str) -> str:
    """`url` with the password of its user info, a bare token user info, and credential query values masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # the authority ends at the first '/', '?' or '#'; the user info at its last '@' (passwords may hold '@')
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{MASK}@{hosts}" if colon else f"{MASK}@{hosts}"
    if "=" in tail:
        tail = _PARAM.sub(_mask_param, tail)
    return f"{scheme}://{authority}{tail}"


def _mask_param(m: re.Match[str]) -> str:
    if m["value"] and SECRET_PARAM.search(m["name"]):
        return f"{m['sep']}{m['name']}={MASK}"
    return m[0]


def redact(text: str) -> str:
    """`text` with every URL in it masked by `mask_url`; text without '://' comes back as it is (cheap)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: mask_url(m[0]), text)


EXCERPT_CHARS = 200
SCAN_CHARS = 4000  # redact this much, then cut: a secret across the cut is already gone

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
# a key/field name whose value is a secret (a node log line's `fields`: functions/node_logs.py)
SECRET_NAME = re.compile(
    r"(?i)password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential"
    r"|session|authorization|cookie"
)
_KEY_SHAPES = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)


def redact_credentials(text: str) -> str:
    """`text` with URLs masked (`redact`) and every other credential the module docstring lists."""
    text = redact(text)
    text = _AUTH_HEADER.sub(rf"\1\2{MASK}", text)
    text = _SCHEME_CREDENTIAL.sub(rf"\1 {MASK}", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m[1]}{m[2]}{_masked_value(m[3])}", text)
    return _KEY_SHAPES.sub(MASK, text)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of `text`, credentials masked, at most `limit` characters (an ellipsis marks a cut)."""
    clean = redact_credentials(text[:SCAN_CHARS])
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _masked_value(value: str) -> str:
    quote = value[0] if value[:1] in ('"', "'") else ""
    return f"{quote}{MASK}{quote}"

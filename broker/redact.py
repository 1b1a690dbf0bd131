"""Secrets out of what knflow prints and logs: URLs with their passwords masked. Pure.

    mask_url("mongodb://app:s3cret@mongo:27017/knflow")   # 'mongodb://app:****@mongo:27017/knflow'
    mask_url("nats://TOKEN@nats:4222")                    # 'nats://****@nats:4222' (a lone user part is a token)
    mask_url("https://h/x?token=abc&page=2")              # 'https://h/x?token=****&page=2'
    redact("cannot open mongodb://app:s3cret@mongo/db")   # every URL in a text, masked the same way

Every place that shows a URL that may hold credentials (the `knflow dev` and `knflow serve` banners, store,
blob, NATS and sink errors, settings errors and `repr(Settings())`, log lines) goes through these two.
The host, port, path and the other query parameters stay, so a reader can still tell which server it was.
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

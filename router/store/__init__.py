"""Run stores: one async interface (`base.RunStore`), SQLite (embedded default) and MongoDB backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.redact import mask_url, redact

if TYPE_CHECKING:
    from router.store.base import RunStore


def open_store(url: str) -> RunStore:
    """A store from a URL: `sqlite:///path/knflow.db`, `sqlite://:memory:`, `mongodb://host/db`."""
    from broker.errors import KnflowError

    if url.startswith("sqlite:") or "://" not in url:
        from router.store.sqlite import SqliteStore

        return SqliteStore.from_url(url) if url.startswith("sqlite:") else SqliteStore(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from pymongo.errors import ConfigurationError

        from router.store.mongo import MongoStore

        try:
            return MongoStore.from_url(url)
        except (ValueError, ConfigurationError) as exc:  # a bad port, an unescaped password, a bad option
            shown = mask_url(url)
            raise KnflowError(
                f"store URL {shown!r} is not a usable MongoDB URL: {redact(str(exc))}", url=shown
            ) from None
    shown = mask_url(url)
    raise KnflowError(f"store URL {shown!r} is not supported. Expected sqlite:///PATH or mongodb://HOST/DB.", url=shown)

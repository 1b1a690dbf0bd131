"""Network clients shared per event loop and per server, closed on the loop that opened them.

A client (openai, pymongo, redis-py) holds a connection pool bound to the event loop it first ran on, so
builtins keep one per (loop, key) — the key names the server, e.g. its URL — and close them all at
shutdown on that loop (the function server's lifespan exit; the local runner's teardown).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
C = TypeVar("C")


class LoopClients(Generic[K, C]):
    def __init__(self, make: Callable[[K], C], close: Callable[[C], Awaitable[None]]) -> None:
        self._make = make
        self._close = close
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[K, C]] = weakref.WeakKeyDictionary()

    def get(self, key: K) -> C:
        """The running loop's client for `key`, made on first use."""
        clients = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(key)
        if client is None:
            client = clients[key] = self._make(key)
        return client

    async def aclose(self) -> None:
        """Close the running loop's clients; a later `get` opens new ones. Call it on that loop."""
        clients = self._by_loop.pop(asyncio.get_running_loop(), {})
        for client in clients.values():
            await self._close(client)

    def __len__(self) -> int:
        try:
            return len(self._by_loop.get(asyncio.get_running_loop(), {}))
        except RuntimeError:  # no running loop
            return 0

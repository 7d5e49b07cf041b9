"""Running one coroutine against a real Redis through the worker's :class:`StateStore`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis

from stream_app.store.keys import Keys
from stream_app.store.state import StateStore

T = TypeVar("T")


def run(make: Callable[[StateStore], Coroutine[Any, Any, T]], url: str, keys: Keys) -> T:
    """``make(store)`` on a fresh connection to ``url``, closed afterwards."""

    async def main() -> T:
        client = aioredis.from_url(url)
        try:
            return await make(StateStore(client, keys))
        finally:
            await client.aclose()

    return asyncio.run(main())

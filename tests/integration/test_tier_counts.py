"""Tier counts against a real redis-server: moved by the fenced write, and only by a win.

The counts replace release 0.1's per-tier sorted sets (~112 B per customer); those are
folded into the counts once, at worker start, and deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from stream_app.devkit.stack import LocalService
from stream_app.store.keys import Keys
from stream_app.store.records import Write
from stream_app.store.state import StateStore
from stream_app.store.tiercounts import read_tier_counts

T = TypeVar("T")
TIERS = ("cold", "warm", "hot")


def run(make: Callable[[aioredis.Redis], Coroutine[Any, Any, T]], url: str) -> T:
    async def main() -> T:
        client = aioredis.from_url(url)
        try:
            return await make(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


@pytest.fixture
def keys(unique_name: Callable[[str], str]) -> Keys:
    return Keys(unique_name("tc"), "default")


def commit(url: str, keys: Keys, *writes: tuple[str, int, str, str]) -> list[str]:
    """Fenced writes of (customer, version read, tier read, new tier); the losers."""
    batch = [Write(cid, v, {"i0": v}, b"[1]", tier_move=(old, new)) for cid, v, old, new in writes]
    return run(lambda c: StateStore(c, keys).commit(batch), url)


def counts(url: str, keys: Keys) -> dict[str, int]:
    return dict(zip(TIERS, run(lambda c: read_tier_counts(c, keys, TIERS), url), strict=True))


def test_new_customers_count_in_their_tier_and_moves_move_them(
    redis_server: LocalService, keys: Keys
) -> None:
    url = redis_server.url
    assert counts(url, keys) == {"cold": 0, "warm": 0, "hot": 0}
    commit(url, keys, ("a", 0, "", "cold"), ("b", 0, "", "cold"), ("c", 0, "", "warm"))
    assert counts(url, keys) == {"cold": 2, "warm": 1, "hot": 0}
    commit(url, keys, ("a", 1, "cold", "hot"), ("c", 1, "warm", "warm"))
    assert counts(url, keys) == {"cold": 1, "warm": 1, "hot": 1}


def test_a_write_that_loses_its_fence_moves_no_count(
    redis_server: LocalService, keys: Keys
) -> None:
    url = redis_server.url
    commit(url, keys, ("a", 0, "", "cold"))
    # a stale writer (read version 0, "new customer") and one that read version 1 race
    lost = commit(url, keys, ("a", 0, "", "warm"), ("a", 1, "cold", "hot"))
    assert lost == ["a"]
    assert counts(url, keys) == {"cold": 0, "warm": 0, "hot": 1}
    # a replay of the winning write (same version read) loses now and counts nothing
    assert commit(url, keys, ("a", 1, "cold", "hot")) == ["a"]
    assert counts(url, keys) == {"cold": 0, "warm": 0, "hot": 1}


def test_writes_without_read_indexes_leave_the_counts_alone(
    redis_server: LocalService, keys: Keys
) -> None:
    commit(redis_server.url, keys, ("a", 0, "", ""), ("b", 0, "", "warm"))
    assert counts(redis_server.url, keys) == {"cold": 0, "warm": 1, "hot": 0}

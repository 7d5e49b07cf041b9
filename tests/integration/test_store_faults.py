"""The state store against a real redis-server when records or keys are not what they should
be, and when a failover loses acknowledged writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from stream_app.devkit.stack import LocalService, start_redis
from stream_app.store.guard import require_noeviction
from stream_app.store.keys import Keys
from stream_app.store.nps import NpsCounters
from stream_app.store.records import Write, decode_record, encode_record
from stream_app.store.state import StateStore
from stream_app.worker.errors import transient_cause
from tests.support.store import run


@pytest.fixture
def keys(unique_name: Callable[[str], str]) -> Keys:
    return Keys(unique_name("sf"), "default")


def write(cid: str, version: int, state: bytes, token: str = "") -> Write:
    return Write(cid, version, {"i0": 1}, state, due_partition=0, due_at_ms=5e12, read_token=token)


def test_unusable_records_come_back_flagged_not_raised(
    redis_server: LocalService, redis_client: redis.Redis, keys: Keys
) -> None:
    redis_client.set(keys.state("garbled"), b"not a record at all")
    redis_client.set(keys.state("short"), b"3.ab i0=1 99 [1]")  # says 99 bytes of state
    redis_client.hset(keys.state("hashed"), "a", "1")
    redis_client.rpush(keys.state("listed"), "a")
    run(lambda s: s.commit([write("fine", 0, b"[1]")]), redis_server.url, keys)
    got = run(
        lambda s: s.load(["garbled", "short", "hashed", "listed", "fine", "new"]),
        redis_server.url,
        keys,
    )
    assert got["garbled"].fault is not None and got["garbled"].fault[0] == "corrupt_state"
    assert got["short"].fault is not None and got["short"].fault[0] == "corrupt_state"
    assert got["hashed"].fault == (
        "store_rejected",
        "WRONGTYPE: the customer's state key holds a hash, not a string",
    )
    assert got["listed"].fault is not None and "list" in got["listed"].fault[1]
    assert got["fine"].fault is None and got["fine"].state == b"[1]"
    assert got["new"].fault is None and got["new"].version == 0


def test_a_write_to_a_key_of_another_type_loses_and_changes_nothing(
    redis_server: LocalService, redis_client: redis.Redis, keys: Keys
) -> None:
    redis_client.hset(keys.state("hashed"), "a", "1")
    lost = run(
        lambda s: s.commit([write("hashed", 0, b"[1]"), write("b", 0, b"[2]")]),
        redis_server.url,
        keys,
    )
    assert lost == ["hashed"]  # the batch re-reads it and finds the fault
    assert redis_client.hgetall(keys.state("hashed")) == {b"a": b"1"}
    assert redis_client.get(keys.state("b")) is not None


def test_a_shared_key_redis_refuses_is_logged_and_the_records_still_written(
    redis_server: LocalService,
    redis_client: redis.Redis,
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis_client.set(keys.due(0), "not a sorted set")  # the due index of partition 0
    redis_client.set(keys.segment_members("vip"), "nor is this")
    index = [("ZADD", keys.segment_members("vip"), 0, "a")]
    with caplog.at_level(logging.ERROR, logger="stream_app.store.state"):
        lost = run(lambda s: s.commit([write("a", 0, b"[1]")], index=index), redis_server.url, keys)
    assert lost == []
    assert redis_client.get(keys.state("a")) is not None
    assert caplog.text.count("refused") == 2 and "WRONGTYPE" in caplog.text


def test_redis_errors_retrying_cures_are_raised_with_their_cause(
    tmp_path: Path, keys: Keys
) -> None:
    own = start_redis(data_dir=tmp_path)  # (not the session's: it runs out of memory here)
    client = redis.Redis.from_url(own.url)
    try:
        client.config_set("maxmemory", 1)  # noeviction: every write refused with OOM
        with pytest.raises(redis.exceptions.OutOfMemoryError) as caught:
            run(lambda s: s.commit([write("a", 0, b"[1]")]), own.url, keys)
        assert transient_cause(caught.value) == "oom"
        assert client.get(keys.state("a")) is None
    finally:
        client.close()
        own.stop()


def test_a_record_lost_in_a_failover_cannot_be_matched_by_its_successor(
    redis_server: LocalService, redis_client: redis.Redis, keys: Keys
) -> None:
    """Versions go back when a failover loses acknowledged writes, and the next write hands
    the same version number out again. A writer still holding the lost record must not win
    against its successor: the fence compares write ids, not version numbers."""
    key = keys.state("c")
    run(lambda s: s.commit([write("c", 0, b"[v1]")]), redis_server.url, keys)
    v1 = decode_record(redis_client.get(key))  # type: ignore[arg-type]
    run(lambda s: s.commit([write("c", 1, b"[v2]", v1.fence)]), redis_server.url, keys)
    v2_lost = decode_record(redis_client.get(key))  # type: ignore[arg-type]
    assert v2_lost.version == 2
    # the failover: the replica promoted had v1 only
    redis_client.set(key, encode_record(1, v1.marks, v1.state or b"", v1.explain, v1.token))
    # another writer, reading v1 again, writes version 2 anew
    run(lambda s: s.commit([write("c", 1, b"[v2 again]", v1.fence)]), redis_server.url, keys)
    successor = decode_record(redis_client.get(key))  # type: ignore[arg-type]
    assert successor.version == 2 and successor.token != v2_lost.token
    # the writer that read the lost record (version 2) writes on top of it: it loses
    lost = run(
        lambda s: s.commit([write("c", 2, b"[stale]", v2_lost.fence)]), redis_server.url, keys
    )
    assert lost == ["c"]
    assert decode_record(redis_client.get(key)).state == b"[v2 again]"  # type: ignore[arg-type]
    # (a writer that knows the version only, as before write ids, would have won)
    assert run(lambda s: s.commit([write("c", 2, b"[blind]")]), redis_server.url, keys) == []


def test_the_documented_acl_allows_every_command_of_the_store_and_the_guard(
    tmp_path: Path,
) -> None:
    """docs/deployment.md's ACL rule (with ``+info`` for the eviction check) against loads
    that meet a key of another type, fenced writes, NPS counting, pruning and reading."""
    own = start_redis(data_dir=tmp_path)
    admin = redis.Redis.from_url(own.url)
    keys = Keys("es", "default")
    try:
        admin.execute_command(
            "ACL", "SETUSER", "scorer", "on", ">pw", "~es:*", "+@read", "+@write",
            "+@scripting", "+@connection", "-@dangerous", "+info",
        )  # fmt: skip
        admin.hset(keys.state("hashed"), "a", "1")
        url = own.url.replace("redis://", "redis://scorer:pw@")

        async def main() -> None:
            client = aioredis.from_url(url)
            try:
                store = StateStore(client, keys)
                nps = {("in", 0): [(5, "2020-01-01|*|promoter"), (6, "2026-11-30|*|promoter")]}
                assert await store.commit([write("a", 0, b"[1]")], nps=nps) == []
                got = await store.load(["a", "hashed", "new"])
                assert got["hashed"].fault is not None and got["a"].state == b"[1]"
                counters = NpsCounters(client, keys)
                assert await counters.prune("in", 0, "2021-01-01") == 1
                assert await counters.window(["2026-11-30"], []) == {"2026-11-30|*|promoter": 1}
                await require_noeviction(client)
            finally:
                await client.aclose()

        asyncio.run(main())
    finally:
        admin.close()
        own.stop()

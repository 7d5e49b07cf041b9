"""``StateStore`` against a real redis-server: one script call in, one pipeline out.

What the worker relies on: a batch's fenced writes win or lose per customer, the
explanation lives in the customer's record, a Redis that lost its scripts (restart,
``SCRIPT FLUSH``) costs a reload and nothing else, and records of the previous release
(explanation in a key of its own) still read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis

from stream_app.devkit.stack import LocalService
from stream_app.store.keys import Keys
from stream_app.store.records import Write
from tests.support.store import run


@pytest.fixture
def keys(unique_name: Callable[[str], str]) -> Keys:
    return Keys(unique_name("st"), "default")


def write(cid: str, version: int, state: bytes, explain: bytes | None = None) -> Write:
    return Write(cid, version, {"i0": 7}, state, due_partition=3, due_at_ms=5e12, explain=explain)


def test_commit_writes_records_with_explanation_and_due_entries(
    redis_server: LocalService, redis_client: redis.Redis, keys: Keys
) -> None:
    lost = run(
        lambda s: s.commit([write("a", 0, b"[1]", b"[9]"), write("b", 0, b"[2]")]),
        redis_server.url,
        keys,
    )
    assert lost == []
    records = run(lambda s: s.load(["a", "b", "c"]), redis_server.url, keys)
    assert (records["a"].version, records["a"].state, records["a"].explain) == (1, b"[1]", b"[9]")
    assert (records["b"].state, records["b"].explain) == (b"[2]", None)
    assert records["b"].marks == {"i0": 7}
    assert records["c"].version == 0 and records["c"].state is None
    assert redis_client.zscore(keys.due(3), "a") == 5e12


def test_a_write_from_a_stale_version_loses_and_changes_nothing(
    redis_server: LocalService, keys: Keys
) -> None:
    run(lambda s: s.commit([write("a", 0, b"[1]")]), redis_server.url, keys)
    lost = run(
        lambda s: s.commit([write("a", 0, b"[stale]"), write("b", 0, b"[2]")]),
        redis_server.url,
        keys,
    )
    assert lost == ["a"]
    records = run(lambda s: s.load(["a", "b"]), redis_server.url, keys)
    assert records["a"].state == b"[1]" and records["b"].state == b"[2]"


def test_scripts_lost_by_redis_are_loaded_again(
    redis_server: LocalService, redis_client: redis.Redis, keys: Keys
) -> None:
    redis_client.script_flush()
    assert run(lambda s: s.commit([write("a", 0, b"[1]")]), redis_server.url, keys) == []
    redis_client.script_flush()
    nps = {("in", 0): [(5, "2026-11-23|*|promoter")]}
    assert run(lambda s: s.commit([], nps=nps), redis_server.url, keys) == []
    redis_client.script_flush()
    run(lambda s: s.reschedule(3, {"a": (5e12, 6e12)}), redis_server.url, keys)
    assert run(lambda s: s.load(["a"]), redis_server.url, keys)["a"].version == 1
    assert run(lambda s: s.nps_counts(), redis_server.url, keys) == {"2026-11-23|*|promoter": 1}
    assert redis_client.zscore(keys.due(3), "a") == 6e12


def test_a_record_of_an_unknown_layout_is_refused_and_left_as_it_is(
    redis_server: LocalService, redis_client: redis.Redis, keys: Keys
) -> None:
    redis_client.set(keys.state("a"), b"4 i0=3 [1,null]")  # no state length: not ours
    record = run(lambda s: s.load(["a"]), redis_server.url, keys)["a"]
    assert record.fault is not None and record.fault[0] == "corrupt_state"
    assert record.state is None and record.version == 0
    assert redis_client.get(keys.state("a")) == b"4 i0=3 [1,null]"


def test_one_read_tells_records_missing_keys_and_keys_of_another_type(
    redis_server: LocalService, redis_client: redis.Redis, keys: Keys
) -> None:
    """One script call reads the batch; only keys of another type cost a second trip."""
    run(lambda s: s.commit([write("a", 0, b"[1]", b"[9]")]), redis_server.url, keys)
    redis_client.sadd(keys.state("set"), "x")
    redis_client.hset(keys.state("hash"), "f", "v")
    redis_client.script_flush()  # the read script is loaded again when Redis lost it
    order = ["hash", "a", "none", "set"]
    records = run(lambda s: s.load(order), redis_server.url, keys)
    assert list(records) == order
    assert records["a"].state == b"[1]" and records["a"].explain == b"[9]"
    assert records["none"].fault is None and records["none"].state is None
    for cid, kind in (("set", "set"), ("hash", "hash")):
        fault = records[cid].fault
        assert fault is not None and fault[0] == "store_rejected" and kind in fault[1]
    assert redis_client.type(keys.state("set")) == b"set"  # left as it is


def test_a_record_of_the_previous_format_is_read_and_rewritten_in_format_2(
    redis_server: LocalService, redis_client: redis.Redis, keys: Keys
) -> None:
    redis_client.set(keys.state("old"), b"4.abc i0=3,r0=8 3 [1][9]")  # record format 1
    record = run(lambda s: s.load(["old"]), redis_server.url, keys)["old"]
    assert (record.version, record.marks, record.state, record.explain, record.token) == (
        4, {"i0": 3, "r0": 8}, b"[1]", b"[9]", "4.abc"
    )  # fmt: skip
    w = Write("old", 4, {**record.marks, "i0": 4}, b"[2]", read_token=record.fence)
    assert run(lambda s: s.commit([w]), redis_server.url, keys) == []
    raw = redis_client.get(keys.state("old"))
    assert isinstance(raw, bytes) and raw.startswith(w.token.encode() + b" \x02")
    again = run(lambda s: s.load(["old"]), redis_server.url, keys)["old"]
    assert (again.version, again.marks, again.state) == (5, {"i0": 4, "r0": 8}, b"[2]")


def test_reads_go_on_while_writes_are_paused(
    redis_server: LocalService, redis_client: redis.Redis, keys: Keys
) -> None:
    """The read script is flagged no-writes: like MGET, it is not held by CLIENT PAUSE
    WRITE (a failover's pause), which holds every script that may write."""
    run(lambda s: s.commit([write("a", 0, b"[1]")]), redis_server.url, keys)
    redis_client.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    try:
        records = run(
            lambda s: asyncio.wait_for(s.load(["a", "b"]), timeout=10), redis_server.url, keys
        )
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    assert records["a"].state == b"[1]" and records["b"].state is None

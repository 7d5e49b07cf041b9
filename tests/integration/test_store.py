"""``StateStore`` against a real redis-server: one ``MGET`` in, one pipeline out.

What the worker relies on: a batch's fenced writes win or lose per customer, the
explanation lives in the customer's record, a Redis that lost its scripts (restart,
``SCRIPT FLUSH``) costs a reload and nothing else, and records of the previous release
(explanation in a key of its own) still read.
"""

from __future__ import annotations

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

"""The co-partitioning assignor: partition k of the input and of the by-customer topic go to
one worker, whatever the number of workers; and faust's round-robin fallback is replaced."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from stream_app.faustx.assignor import CopartitionedAssignor
from stream_app.faustx.compat import FaustIncompatible
from stream_app.faustx.tuning import _copartition

TOPICS = ("in", "in.by-customer")


def _cluster(partitions: dict[str, int]) -> Any:
    return SimpleNamespace(
        partitions_for_topic=lambda t: set(range(partitions[t])) if t in partitions else None
    )


def _assign(members: dict[str, tuple[str, ...]], partitions: dict[str, int]) -> dict[str, Any]:
    meta = {m: CopartitionedAssignor.metadata(list(topics)) for m, topics in members.items()}
    out = CopartitionedAssignor.assign(_cluster(partitions), meta)
    return {m: {t: set(p) for t, p in a.assignment} for m, a in out.items()}


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("partitions", [1, 4, 8, 12])
def test_partition_k_of_both_topics_goes_to_one_worker(workers: int, partitions: int) -> None:
    members = {f"faust-{i:02d}": TOPICS for i in range(workers)}
    got = _assign(members, dict.fromkeys(TOPICS, partitions))
    for topic in TOPICS:
        owned = [got[m].get(topic, set()) for m in members]
        assert sorted(p for o in owned for p in o) == list(range(partitions))  # each exactly once
        assert max(map(len, owned)) - min(map(len, owned)) <= 1  # balanced
    for m in members:
        assert got[m].get(TOPICS[0], set()) == got[m].get(TOPICS[1], set())


def test_round_robin_would_split_them() -> None:
    """Why the assignor exists: 8 partitions, 3 workers."""
    meta = {f"m{i}": RoundRobinPartitionAssignor.metadata(list(TOPICS)) for i in range(3)}
    out = RoundRobinPartitionAssignor.assign(_cluster(dict.fromkeys(TOPICS, 8)), meta)
    split = [dict(a.assignment) for a in out.values()]
    assert any(sorted(a[TOPICS[0]]) != sorted(a.get(TOPICS[1], [])) for a in split)


def test_members_only_get_topics_they_subscribe_to_and_unknown_topics_are_skipped() -> None:
    got = _assign({"a": ("in",), "b": ("in", "other")}, {"in": 4})
    assert got["a"] == {"in": {0, 2}}
    assert got["b"] == {"in": {1, 3}}


def test_the_worker_consumer_gets_the_copartitioned_assignor() -> None:
    consumer = SimpleNamespace(_partition_assignment_strategy=[RoundRobinPartitionAssignor])
    _copartition(consumer)
    assert consumer._partition_assignment_strategy == (CopartitionedAssignor,)
    faust_own = object()  # an app with tables keeps faust's assignor
    consumer = SimpleNamespace(_partition_assignment_strategy=[faust_own])
    _copartition(consumer)
    assert consumer._partition_assignment_strategy == [faust_own]
    with pytest.raises(FaustIncompatible, match="assignor patch"):
        _copartition(SimpleNamespace())

"""A co-partitioning consumer-group assignor: partition ``k`` of every topic goes to one worker.

The agent reads two topics, the input and the by-customer topic, which have the same
partition count and the same owner partition per customer
(:func:`stream_app.messages.expected_partition`).
A customer's events must all be scored by one worker, and the decay sweep of input
partition ``k`` checks the by-customer partition ``k`` as well, so a worker that owns input
partition ``k`` must own by-customer partition ``k`` too.

faust-streaming 0.15 uses aiokafka's round-robin assignor when the app has no tables and no
standby replicas (our case). Round-robin deals all topic-partitions in one sequence, so with
8 partitions and 3 workers input ``p0`` goes to one worker and by-customer ``p0`` to another.
This assignor deals *partition numbers* round-robin instead, and gives each member that
number in every topic it subscribes to.

>>> from types import SimpleNamespace
>>> cluster = SimpleNamespace(partitions_for_topic=lambda t: set(range(8)))
>>> members = {m: CopartitionedAssignor.metadata(["in", "in.by-customer"]) for m in "abc"}
>>> out = CopartitionedAssignor.assign(cluster, members)
>>> [(m, out[m].assignment) for m in "abc"]  # doctest: +NORMALIZE_WHITESPACE
[('a', [('in', [0, 3, 6]), ('in.by-customer', [0, 3, 6])]),
 ('b', [('in', [1, 4, 7]), ('in.by-customer', [1, 4, 7])]),
 ('c', [('in', [2, 5]), ('in.by-customer', [2, 5])])]
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

log = logging.getLogger(__name__)

__all__ = ["CopartitionedAssignor"]


class CopartitionedAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """Round-robin over partition numbers; partition ``k`` of every topic to the same member.

    Members are taken in sorted order of their ids, among those subscribed to the topic (all
    workers of one app subscribe to the same topics, so the assignment is co-partitioned).
    """

    name = "copartitioned"
    version = 0

    @classmethod
    def assign(
        cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        assignment: dict[str, dict[str, list[int]]] = {m: defaultdict(list) for m in members}
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:
                log.warning("no partition metadata for topic %s", topic)
                continue
            eligible = sorted(m for m, meta in members.items() if topic in meta.subscription)
            for partition in sorted(partitions):
                assignment[eligible[partition % len(eligible)]][topic].append(partition)
        return {
            member: ConsumerProtocolMemberAssignment(
                cls.version, sorted(assignment[member].items()), b""
            )
            for member in members
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass

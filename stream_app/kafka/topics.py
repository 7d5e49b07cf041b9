"""Topic creation: the one path used by the worker, the dev stack and the tests.

Configs are always given explicitly at creation (Tansu only reports configs that were
set then). Topics are listed before they are described: Tansu auto-creates any topic a
metadata request names (4 partitions, no configs).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from stream_app.errors import StreamAppError
from stream_app.kafka.auth import aiokafka_config
from stream_app.kafka.io import BrokerUnavailable
from stream_app.settings import Settings

_POLL = 0.1  # seconds between two metadata polls while new topics show up


class TopicsError(StreamAppError):
    """A topic cannot be created, or exists with a partition count that does not fit."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create where missing (``exact``: an existing one must have
    ``partitions`` too)."""

    name: str
    partitions: int
    retention_ms: int = 7 * 24 * 3600 * 1000
    cleanup_policy: str = "delete"
    exact: bool = True


async def ensure_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    *,
    replication_factor: int = 1,
    client_config: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Create the missing topics, wait until all are in the metadata; their partition counts.

    "Already exists" is fine; an ``exact`` spec whose topic has another partition count is
    a :class:`TopicsError`. Waits up to ``timeout`` seconds for the broker
    (:class:`stream_app.kafka.io.BrokerUnavailable` after that).
    """
    wanted = {s.name: s for s in specs}
    if not wanted:
        return {}
    deadline = time.monotonic() + timeout
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **(client_config or {})
    )
    try:
        await _start(admin, bootstrap, deadline)
        existing = set(await admin.list_topics())
        missing = [_new_topic(s, replication_factor) for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *rest in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise TopicsError(f"cannot create topic {name!r}: error {code} {rest}")
        found = await _wait_for(admin, set(wanted), deadline)
    finally:
        await admin.close()
    wrong = {n: c for n, c in found.items() if wanted[n].exact and c != wanted[n].partitions}
    if wrong:
        detail = ", ".join(f"{n} has {c}, not {wanted[n].partitions}" for n, c in wrong.items())
        raise TopicsError(f"topics exist with other partition counts: {detail}")
    return found


async def prepare(settings: Settings, *, timeout_s: float = 60.0) -> int:
    """Create the worker's topics where missing; return the input's partition count.

    The input keeps whatever partition count it already has; the by-customer topic
    must match it (that is what co-partitions the two), the output and dead-letter
    topics get ``settings.partitions`` when they are created.
    """
    common: dict[str, Any] = {
        "replication_factor": settings.topic_replication_factor,
        "client_config": aiokafka_config(settings),
    }
    retention = settings.topic_retention_ms
    bootstrap = ",".join(settings.broker_list)
    deadline = time.monotonic() + timeout_s

    def left() -> float:
        return max(deadline - time.monotonic(), 1.0)

    first = TopicSpec(settings.input_topic, settings.partitions, retention, exact=False)
    found = await ensure_topics(bootstrap, [first], timeout=left(), **common)
    partitions = found[settings.input_topic]
    specs = [
        TopicSpec(settings.by_customer_topic, partitions, retention),
        TopicSpec(settings.output_topic, settings.partitions, retention, exact=False),
        TopicSpec(settings.dlq_topic, settings.partitions, retention, exact=False),
    ]
    try:
        await ensure_topics(bootstrap, specs, timeout=left(), **common)
    except TopicsError as exc:
        raise TopicsError(
            f"{exc} (the by-customer topic must have as many partitions as "
            f"{settings.input_topic}: {partitions})"
        ) from None
    return partitions


def _new_topic(spec: TopicSpec, replication_factor: int) -> NewTopic:
    return NewTopic(
        spec.name,
        spec.partitions,
        replication_factor,
        topic_configs=topic_configs(spec, replication_factor),
    )


def topic_configs(spec: TopicSpec, replication_factor: int) -> dict[str, str]:
    """The configs a topic is created with: retention, cleanup policy and, with three or
    more replicas, ``min.insync.replicas`` of a majority, so that an ``acks=all`` write is
    on at least two brokers before it is acknowledged.

    >>> topic_configs(TopicSpec("t", 8), 3)["min.insync.replicas"]
    '2'
    >>> "min.insync.replicas" in topic_configs(TopicSpec("t", 8), 1)
    False
    """
    configs = {"retention.ms": str(spec.retention_ms), "cleanup.policy": spec.cleanup_policy}
    if replication_factor >= 3:
        configs["min.insync.replicas"] = str(replication_factor // 2 + 1)
    return configs


async def _start(admin: AIOKafkaAdminClient, bootstrap: str, deadline: float) -> None:
    """Start the admin client, retrying while the broker starts, until ``deadline``."""
    while True:
        try:
            await admin.start()
            return
        except KafkaConnectionError as exc:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from None
        await asyncio.sleep(1.0)  # back-off while the broker starts


async def _wait_for(admin: AIOKafkaAdminClient, names: set[str], deadline: float) -> dict[str, int]:
    """Partition counts of ``names``, once all of them show in the metadata."""
    while True:  # list first: a metadata request naming a missing topic creates it
        with contextlib.suppress(KafkaError):
            if names <= set(await admin.list_topics()):
                found = {
                    d["topic"]: len(d["partitions"])
                    for d in await admin.describe_topics(sorted(names))
                    if d["error_code"] == 0
                }
                if found.keys() >= names and all(found.values()):
                    return found
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"topics not ready in time: {sorted(names)}")
        await asyncio.sleep(_POLL)

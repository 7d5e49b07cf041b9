"""Kafka clients of the tests: producing with known offsets, reading topics back.

Tansu's ListOffsets answers the last batch's base offset + 1, not the end offset, so "the
whole topic" is read by writing a marker to every partition and reading up to the markers
(:func:`read_to_end`, only for topics no worker consumes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

MARKER = b'{"test_marker": true}'


@dataclass(frozen=True, slots=True)
class Out:
    """A message to produce: value, key, and an explicit partition (None: the partitioner's)."""

    value: bytes
    key: bytes | None = None
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """Where a produced message landed."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Message:
    """One message read back from a topic."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = ()

    def json(self) -> Any:
        return orjson.loads(self.value)


def in_offset_order(docs: Sequence[Mapping[str, Any]], sent: Sequence[Sent]) -> list[bytes]:
    """The raw messages ordered as a worker meets them: by (partition, offset)."""
    pairs = sorted(zip(sent, docs, strict=True), key=lambda p: (p[0].partition, p[0].offset))
    return [orjson.dumps(doc) for _, doc in pairs]


async def produce(brokers: str, topic: str, messages: Sequence[Out]) -> list[Sent]:
    """Produce in order with acks=all; returns each message's partition and offset."""
    producer = AIOKafkaProducer(
        bootstrap_servers=brokers, acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    try:  # (stopped even when the start fails: a producer left unclosed warns in a later test)
        await producer.start()
        futures = [
            await producer.send(topic, m.value, key=m.key, partition=m.partition) for m in messages
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [Sent(md.partition, md.offset) for md in metas]


async def list_topics(brokers: str) -> set[str]:
    """Topic names, by listing (a Metadata request naming a topic would create it on Tansu)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    try:
        await admin.start()
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _consumer(brokers: str, topic: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    if topic not in await list_topics(brokers):
        raise AssertionError(f"topic {topic!r} does not exist")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=brokers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer.stop()
        raise AssertionError(f"no partitions for {topic!r}")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, tps


async def read_until(
    brokers: str, topic: str, until: Callable[[list[Message]], object], timeout: float
) -> list[Message] | None:
    """All messages of ``topic`` from the start, once ``until`` holds (None at the deadline)."""
    deadline = time.monotonic() + timeout
    consumer, _ = await _consumer(brokers, topic)
    seen: list[Message] = []
    try:
        while True:
            if until(seen):
                return seen
            if time.monotonic() > deadline:
                return None
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, msgs in batch.items():
                seen.extend(
                    Message(m.key, m.value, tp.partition, m.offset, tuple(m.headers)) for m in msgs
                )
    finally:
        await consumer.stop()


def read_to_end(
    brokers: str, topic: str, partitions: int, timeout: float, *, key: bytes = b"test-marker"
) -> list[Message] | None:
    """Everything in ``topic`` produced before this call, markers left out (None at the
    deadline): a marker is written to every partition, then the topic is read until all of
    them show."""
    markers = [Out(MARKER, key, p) for p in range(partitions)]
    sent = asyncio.run(produce(brokers, topic, markers))
    ends = {(s.partition, s.offset) for s in sent}
    seen: set[tuple[int, int]] = set()
    count = 0

    def done(messages: list[Message]) -> bool:
        nonlocal count
        seen.update((m.partition, m.offset) for m in messages[count:])
        count = len(messages)
        return ends <= seen

    got = asyncio.run(read_until(brokers, topic, done, timeout))
    return None if got is None else [m for m in got if m.value != MARKER]


def last_sent(docs: Sequence[Mapping[str, Any]], sent: Sequence[Sent]) -> dict[str, Sent]:
    """Each customer's highest input offset (keyed input: one partition per customer)."""
    last: dict[str, Sent] = {}
    for doc, s in zip(docs, sent, strict=True):
        cid = str(doc["customer_id"])
        assert cid not in last or last[cid].partition == s.partition, "keyed by customer"
        if cid not in last or s.offset > last[cid].offset:
            last[cid] = s
    return last

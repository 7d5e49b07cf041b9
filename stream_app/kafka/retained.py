"""Read what a topic retains, once, from its earliest offset to its end when reading began.

The end of each partition is the highwater of the first fetch response that covers it
(``ListOffsets`` is not trusted: Tansu answers the last batch's base offset + 1), so a
topic that keeps growing is still read to a definite end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.kafka.io import BrokerUnavailable, _bootstrap, _start


@dataclass(frozen=True, slots=True)
class Retained:
    """One retained message."""

    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None


async def read_retained(
    brokers: Sequence[str] | str,
    topic: str,
    *,
    client_config: dict[str, Any] | None = None,
    timeout_s: float = 300.0,
) -> AsyncIterator[Retained]:
    """Every message ``topic`` retains, partition by partition interleaved as fetched.

    Raises :class:`BrokerUnavailable` when the topic is missing, or when ``timeout_s``
    passes before every partition was read to its end.
    """
    bootstrap = _bootstrap(brokers)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **(client_config or {}),
    )
    await _start(consumer, bootstrap)
    try:
        if topic not in await consumer.topics():
            raise BrokerUnavailable(f"topic {topic!r} does not exist")
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if tp in ends and m.offset >= ends[tp]:
                        continue
                    yield Retained(tp.partition, m.offset, m.timestamp, m.key, m.value)
            for tp in tps:
                if tp not in ends and (high := consumer.highwater(tp)) is not None:
                    ends[tp] = high
            if len(ends) == len(tps) and await _reached(consumer, ends):
                return
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"reading {topic} did not reach its end in {timeout_s}s")
    except KafkaError as exc:
        raise BrokerUnavailable(f"Kafka error while reading {topic}: {exc}") from None
    finally:
        await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True

"""The messages the worker reads and writes, free of any Kafka client type.

:class:`Record` is one consumed Kafka message; :class:`OutMessage` one to publish.
:class:`Topics` names the four topics, and :func:`expected_partition` is the
partition routing every producer of the input is expected to follow (Java's murmur2
of the customer id, as the by-customer topic is keyed).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aiokafka.partitioner import murmur2

#: Kafka headers of a message: (name, value) pairs, in order.
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone (dead-lettered as not_json)
    timestamp: float | None = None  # the message's Kafka timestamp, seconds since the epoch
    headers: Headers = ()


#: The CloudEvents Kafka protocol binding's header for structured content mode.
CLOUDEVENT_HEADERS: Headers = (("content-type", b"application/cloudevents+json; charset=UTF-8"),)


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to publish."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()
    partition: int | None = None  # None: by the key


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names and the input's partition count."""

    input: str
    by_customer: str
    output: str
    dlq: str
    input_partitions: int

    @property
    def sources(self) -> tuple[str, str]:
        """The two topics the worker consumes (co-partitioned)."""
        return self.input, self.by_customer


@functools.lru_cache(maxsize=65_536)
def expected_partition(customer_id: str, partitions: int) -> int:
    """The partition the default (murmur2) partitioner gives a customer key.

    Cached: murmur2 is pure Python in aiokafka, and busy customers come back often.

    >>> expected_partition("cust-1", 8) == expected_partition("cust-1", 8)
    True
    """
    return int(murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions


def forwards(rec: Record, customer_id: str, topics: Topics) -> bool:
    """Whether an input message goes through the by-customer topic: when it is not on
    its customer's owner partition, or not keyed by its customer id (then the same
    customer's other events may be on other partitions: all of them take one path,
    in one order). With a single partition nothing is forwarded."""
    n = topics.input_partitions
    if n == 1:
        return False
    if rec.key is None or rec.partition != expected_partition(customer_id, n):
        return True
    return rec.key != customer_id.encode()

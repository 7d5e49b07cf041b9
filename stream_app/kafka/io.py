"""Plain aiokafka helpers for the CLI and tests (the worker itself uses faust)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from stream_app import jsonutil
from stream_app.kafka.auth import aiokafka_config, client_config
from stream_app.messages import OutMessage


class BrokerUnavailable(RuntimeError):
    """The Kafka brokers could not be reached."""


def _bootstrap(brokers: Sequence[str] | str) -> str:
    return brokers if isinstance(brokers, str) else ",".join(brokers)


async def _start(client: Any, bootstrap: str) -> None:
    """Start an aiokafka client, or stop it and raise :class:`BrokerUnavailable`.

    Stopping a client that failed to start keeps asyncio from reporting it unclosed.
    """
    try:
        await client.start()
    except KafkaConnectionError as exc:
        await client.stop()
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from None


async def topic_partition_count(brokers: Sequence[str] | str, topic: str) -> int:
    """How many partitions ``topic`` has (raises if it does not exist)."""
    producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(brokers), **client_config())
    await _start(producer, _bootstrap(brokers))
    try:
        parts = await producer.partitions_for(topic)
        return len(parts)
    finally:
        await producer.stop()


class AiokafkaPublisher:
    """A :class:`stream_app.worker.batch.Publisher` over a plain aiokafka producer."""

    def __init__(self, brokers: Sequence[str] | str, **config: Any) -> None:
        self.bootstrap = _bootstrap(brokers)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", **{**client_config(), **config}
        )

    async def start(self) -> None:
        await _start(self.producer, self.bootstrap)

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        futures = [
            await self.producer.send(m.topic, m.value, key=m.key, headers=list(m.headers) or None)
            for m in messages
        ]
        await asyncio.gather(*futures)

    async def __aenter__(self) -> AiokafkaPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def customer_key(line: bytes) -> bytes | None:
    """The customer id of a raw event, as a message key (None if it has none).

    >>> customer_key(b'{"customer_id": "c1"}')
    b'c1'
    >>> customer_key(b'not json') is None
    True
    """
    try:
        obj = jsonutil.loads(line)
    except jsonutil.JSONDecodeError:
        return None
    cid = obj.get("customer_id") if isinstance(obj, dict) else None
    return cid.encode() if isinstance(cid, str) and cid else None


async def produce_lines(
    brokers: Sequence[str] | str,
    topic: str,
    lines: Iterable[bytes],
    *,
    keyed: bool = True,
    chunk: int = 2000,
) -> int:
    """Send raw event lines to ``topic`` (keyed by customer id unless ``keyed`` is False)."""
    sent = 0
    async with AiokafkaPublisher(brokers, linger_ms=5) as pub:
        batch: list[OutMessage] = []
        for line in lines:
            batch.append(OutMessage(topic, customer_key(line) if keyed else None, line))
            if len(batch) >= chunk:
                await pub.publish(batch)
                sent += len(batch)
                batch = []
        if batch:
            await pub.publish(batch)
            sent += len(batch)
    return sent


async def consume(
    brokers: Sequence[str] | str,
    topic: str,
    *,
    from_beginning: bool = True,
    idle_timeout_s: float | None = None,
) -> AsyncIterator[tuple[bytes | None, bytes, int, int]]:
    """Yield ``(key, value, partition, offset)`` from ``topic`` without a consumer group.

    Stops after ``idle_timeout_s`` seconds with nothing new (None: never).
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=_bootstrap(brokers),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=100,
        **client_config(),
    )
    await _start(consumer, _bootstrap(brokers))
    try:
        while True:
            timeout_ms = int((idle_timeout_s or 1.0) * 1000)
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
            if not batch and idle_timeout_s is not None:
                return
            for tp, msgs in batch.items():
                for m in msgs:
                    yield m.key, m.value, tp.partition, m.offset
    except KafkaError as exc:
        raise BrokerUnavailable(f"Kafka error while reading {topic}: {exc}") from None
    finally:
        await consumer.stop()


async def prepare(settings: Any, *, timeout_s: float = 60.0) -> int:
    """Create the worker's topics where missing; return the input's partition count.

    The input keeps whatever partition count it already has; the by-customer topic
    must match it (that is what co-partitions the two), the others get
    ``settings.partitions``. Configs are given explicitly at creation (Tansu only
    reports configs that were set then). Waits up to ``timeout_s`` for the broker.
    Topics are listed before they are described: Tansu auto-creates any topic a
    metadata request names, without configs.
    """
    admin = _TopicAdmin(settings, timeout_s)
    await admin.start()
    try:
        existing = set(await admin.client.list_topics())
        if settings.input_topic not in existing:
            await admin.create(settings.input_topic, settings.partitions)
        found = await admin.wait_for({settings.input_topic})
        partitions = found[settings.input_topic]
        wanted = {
            settings.by_customer_topic: partitions,
            settings.output_topic: settings.partitions,
            settings.dlq_topic: settings.partitions,
        }
        for name, n in wanted.items():
            if name not in existing:
                await admin.create(name, n)
        found = await admin.wait_for(set(wanted))
        if found[settings.by_customer_topic] != partitions:
            raise BrokerUnavailable(
                f"topic {settings.by_customer_topic} has {found[settings.by_customer_topic]} "
                f"partitions but {settings.input_topic} has {partitions}: they must match"
            )
        return partitions
    finally:
        await admin.client.close()


class _TopicAdmin:
    """The admin calls :func:`prepare` needs, with its deadline."""

    def __init__(self, settings: Any, timeout_s: float) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        self.settings = settings
        self.bootstrap = _bootstrap(settings.broker_list)
        self.client = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, **aiokafka_config(settings)
        )
        self.deadline = time.monotonic() + timeout_s

    async def start(self) -> None:
        while True:
            try:
                await self.client.start()
                return
            except KafkaConnectionError as exc:
                if time.monotonic() > self.deadline:
                    raise BrokerUnavailable(
                        f"cannot reach Kafka at {self.bootstrap}: {exc}"
                    ) from None
            await asyncio.sleep(1.0)  # back-off while the broker starts

    async def create(self, name: str, partitions: int) -> None:
        from aiokafka.admin import NewTopic

        configs = {
            "retention.ms": str(self.settings.topic_retention_ms),
            "cleanup.policy": "delete",
        }
        topic = NewTopic(
            name, partitions, self.settings.topic_replication_factor, topic_configs=configs
        )
        result = await self.client.create_topics([topic])
        for tname, code, *rest in result.topic_errors:
            if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS
                raise BrokerUnavailable(f"cannot create topic {tname!r}: error {code} {rest}")

    async def wait_for(self, names: set[str]) -> dict[str, int]:
        """Partition counts of ``names``, once all of them show in the metadata."""
        while True:
            described = await self.client.describe_topics(sorted(names))
            found = {
                d["topic"]: len(d["partitions"])
                for d in described
                if d["error_code"] == 0 and d["partitions"]
            }
            if found.keys() >= names:
                return found
            if time.monotonic() > self.deadline:
                raise BrokerUnavailable(f"topics not ready in time: {sorted(names - found.keys())}")
            await asyncio.sleep(0.1)  # poll metadata until new topics show

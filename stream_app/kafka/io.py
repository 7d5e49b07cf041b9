"""Plain aiokafka producing and consuming, for the CLI, the dev stack, the dashboard's change
feed (:func:`reader`) and tests (the worker's stream itself uses faust). Security settings
come in as client keyword arguments (:func:`stream_app.kafka.auth.aiokafka_config`); none
means plaintext."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from stream_app import jsonutil
from stream_app.errors import StreamAppError
from stream_app.messages import OutMessage


class BrokerUnavailable(StreamAppError):
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
    except BaseException:  # (any other failure, cancellation included: closed all the same)
        await asyncio.shield(client.stop())
        raise


class AiokafkaPublisher:
    """A :class:`stream_app.worker.ports.Publisher` over a plain aiokafka producer.

    ``config``: aiokafka producer keyword arguments (security, batching).
    """

    def __init__(self, brokers: Sequence[str] | str, **config: Any) -> None:
        self.bootstrap = _bootstrap(brokers)
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", **config)

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
    client_config: Mapping[str, Any] | None = None,
) -> int:
    """Send raw event lines to ``topic`` (keyed by customer id unless ``keyed`` is False)."""
    sent = 0
    async with AiokafkaPublisher(brokers, linger_ms=5, **(client_config or {})) as pub:
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


def reader(brokers: Sequence[str] | str, **config: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer without a consumer group (it takes no partitions from anyone and
    commits nothing), for a caller that assigns and seeks itself; ``config``: security."""
    return AIOKafkaConsumer(
        bootstrap_servers=_bootstrap(brokers),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
        **config,
    )


async def consume(
    brokers: Sequence[str] | str,
    topic: str,
    *,
    from_beginning: bool = True,
    idle_timeout_s: float | None = None,
    client_config: Mapping[str, Any] | None = None,
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
        **(client_config or {}),
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

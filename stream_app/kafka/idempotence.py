"""Does the broker support the idempotent producer? Asked once, before the worker starts.

``ENGAGEMENT_KAFKA_IDEMPOTENCE``: ``on`` requires it (the worker refuses to start when
the broker refuses it), ``off`` never asks, ``auto`` asks and goes on without it, with
a warning, when the broker refuses. Apache Kafka supports it; Tansu 0.6 answers
aiokafka's ``InitProducerId`` request (version 0) with an unknown error.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from stream_app.kafka.io import BrokerUnavailable

log = logging.getLogger("stream_app.kafka")


async def broker_supports_idempotence(brokers: str, client_config: dict[str, Any]) -> bool:
    """True when an idempotent producer starts against ``brokers`` (it gets a producer id)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=brokers, acks="all", enable_idempotence=True, **client_config
    )
    try:
        await producer.start()
    except KafkaConnectionError as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {brokers}: {exc}") from None
    except KafkaError as exc:
        log.debug("the broker refused an idempotent producer: %r", exc)
        return False
    finally:
        await producer.stop()
    return True


async def resolve(mode: str, brokers: str, client_config: dict[str, Any]) -> bool:
    """Whether the worker's producer is idempotent, for ``ENGAGEMENT_KAFKA_IDEMPOTENCE``."""
    if mode == "off":
        return False
    if await broker_supports_idempotence(brokers, client_config):
        return True
    if mode == "on":
        raise BrokerUnavailable(
            "the broker refuses the idempotent producer (InitProducerId) and "
            "ENGAGEMENT_KAFKA_IDEMPOTENCE=on requires it"
        )
    log.warning(
        "the broker refuses the idempotent producer (InitProducerId): producing without it "
        "(a batch the producer sends again after a timeout may then be written twice; "
        "consumers deduplicate changes by id). Set ENGAGEMENT_KAFKA_IDEMPOTENCE=off to "
        "silence this, or =on to require it."
    )
    return False

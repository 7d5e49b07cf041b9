"""``engagement-scorer erase`` and ``merge``: send a lifecycle request to the input topic.

The request is keyed by the customer it is about, so it lands on that customer's
partition and is processed in order with its events; the worker does the rest (see
docs/operations.md, "Erasing and merging customers"). Prints the request as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Literal

import redis.exceptions

from scoring import Model
from stream_app import jsonutil
from stream_app.kafka.auth import aiokafka_config
from stream_app.kafka.io import AiokafkaPublisher
from stream_app.lifecycle_requests import describe, new_request, request_message
from stream_app.messages import OutMessage
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.lifecycle import LifecycleStore
from stream_app.store.records import LifecycleStatus
from stream_app.store.state import StoreUnavailable, connect


def erase(args: argparse.Namespace) -> int:
    """Ask the workers to erase a customer."""
    return _send(Settings.from_env(), "erase", args.customer_id, None)


def merge(args: argparse.Namespace) -> int:
    """Ask the workers to merge one customer into another."""
    return _send(Settings.from_env(), "merge", args.from_id, args.into_id)


def _send(
    settings: Settings, kind: Literal["erase", "merge"], customer_id: str, into: str | None
) -> int:
    request = new_request(kind, customer_id, into)
    asyncio.run(_publish(settings, request_message(settings.input_topic, request)))
    sys.stdout.buffer.write(jsonutil.dumps_line(describe(request, settings.input_topic)))
    return 0


async def _publish(settings: Settings, message: OutMessage) -> None:
    async with AiokafkaPublisher(settings.broker_list, **aiokafka_config(settings)) as pub:
        await pub.publish([message])


async def status(settings: Settings, model: Model, customer_id: str) -> LifecycleStatus | None:
    """Whether a customer without a record was erased or merged away (None: neither)."""
    client = connect(settings.redis_url)
    store = LifecycleStore(
        client,
        Keys(settings.key_prefix, model.name),
        secret=settings.suppression_secret.encode(),
        segments=(),
    )
    try:
        return (await store.lookup([customer_id])).get(customer_id)
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable.from_redis(exc) from None
    finally:
        await client.aclose()

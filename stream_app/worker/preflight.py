"""What the worker checks and reports once, before it joins the consumer group.

* the HTTP API is not served beyond loopback without tokens
  (:meth:`stream_app.settings.Settings.check_exposure`);
* the settings in force are logged once, secrets masked
  (:meth:`stream_app.settings.Settings.redacted`);
* Redis cannot evict customer records (:mod:`stream_app.store.guard`);
* whether the broker takes the idempotent producer (:mod:`stream_app.kafka.idempotence`).

Each refusal is a :class:`stream_app.errors.StreamAppError` with a message saying what to
change: the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.exceptions

from stream_app import jsonutil
from stream_app.kafka.auth import aiokafka_config
from stream_app.kafka.idempotence import resolve
from stream_app.settings import Settings
from stream_app.store.guard import require_noeviction
from stream_app.store.state import StoreUnavailable, connect

log = logging.getLogger("stream_app.worker")

#: How long the worker waits for Redis to answer at start-up.
REDIS_WAIT_S = 60.0


def report_settings(settings: Settings) -> None:
    """Log the settings in force, once, with every secret masked."""
    log.info("settings: %s", jsonutil.dumps(settings.redacted()).decode())


async def check_redis(settings: Settings, wait_s: float = REDIS_WAIT_S) -> None:
    """Refuse an evicting Redis (unless told not to check), waiting up to ``wait_s`` for
    Redis to answer."""
    if not settings.redis_require_noeviction:
        return
    client = connect(settings.redis_url)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                await require_noeviction(client)
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise StoreUnavailable.from_redis(exc) from None
            await asyncio.sleep(1.0)  # back-off while Redis starts
    finally:
        await client.aclose()


async def preflight(settings: Settings) -> bool:
    """Run the start-up checks; whether the producer is to be idempotent."""
    settings.check_exposure()
    report_settings(settings)
    await check_redis(settings)
    return await resolve(
        settings.kafka_idempotence, ",".join(settings.broker_list), aiokafka_config(settings)
    )

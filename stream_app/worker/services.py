"""Everything the worker's parts use, built once at start-up and handed to them.

``engagement-scorer worker`` reads the settings, loads the model, creates the topics,
builds the faust App and then :func:`build_services`; the agent, the decay sweep, the
HTTP views and the health checks are each given what they use from it. Nothing is
built on first use and nothing is read from the environment later.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from scoring import Model
from stream_app.messages import Topics
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.lifecycle import LifecycleStore
from stream_app.store.progress import ProgressStore
from stream_app.store.readstore import ReadStore
from stream_app.store.state import RedisClient, StateStore, connect
from stream_app.worker import gc_tuning
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.ports import Consumer, Publisher
from stream_app.worker.scorer import Scorer, ScoringOptions

log = logging.getLogger("stream_app.worker")


@dataclass(frozen=True, slots=True)
class Services:
    """The worker's long-lived objects."""

    settings: Settings
    model: Model
    topics: Topics
    redis: RedisClient
    keys: Keys
    store: StateStore
    readstore: ReadStore
    scorer: Scorer
    metrics: WorkerMetrics
    consumer: Consumer
    lifecycle: LifecycleStore

    async def open(self) -> None:
        """Start-up work that needs the event loop; once, before the first batch."""
        log.info(
            "scoring with model %s v%d, input partitions %d",
            self.model.name,
            self.model.version,
            self.topics.input_partitions,
        )
        if not self.settings.suppression_secret:
            log.warning(
                "ENGAGEMENT_SUPPRESSION_SECRET is not set: erased customers are remembered by "
                "an unkeyed hash of their id, which a guess of the id can be checked against"
            )
        if self.settings.gc_freeze:
            gc_tuning.freeze()


def worker_topics(settings: Settings, input_partitions: int) -> Topics:
    """The worker's topics for these settings."""
    return Topics(
        input=settings.input_topic,
        by_customer=settings.by_customer_topic,
        output=settings.output_topic,
        dlq=settings.dlq_topic,
        input_partitions=input_partitions,
    )


def build_services(
    settings: Settings,
    *,
    model: Model,
    input_partitions: int,
    publisher: Publisher,
    consumer: Consumer,
) -> Services:
    """The worker's services (no I/O yet: Redis connects on first use)."""
    client = connect(settings.redis_url, name=client_name())
    keys = Keys(settings.key_prefix, model.name)
    store = StateStore(client, keys)
    readstore = ReadStore(client, keys, model)
    topics = worker_topics(settings, input_partitions)
    lifecycle = LifecycleStore(
        client,
        keys,
        secret=settings.suppression_secret.encode(),
        segments=[r.name for r in model.segments],
    )
    scorer = Scorer(
        model=model,
        topics=topics,
        store=store,
        publisher=publisher,
        indexes=readstore,
        options=ScoringOptions.from_settings(settings),
        progress_store=ProgressStore(client, keys),
        lifecycle_store=lifecycle,
    )
    return Services(
        settings,
        model,
        topics,
        client,
        keys,
        store,
        readstore,
        scorer,
        WorkerMetrics(),
        consumer,
        lifecycle,
    )


def client_name() -> str:
    """How a worker's Redis connections are named: ``engagement-scorer:<host>:<pid>``."""
    return f"engagement-scorer:{socket.gethostname()}:{os.getpid()}"

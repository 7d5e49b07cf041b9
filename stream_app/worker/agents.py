"""The worker's faust agent and timers: thin; batching and acks here, the rest in ``runtime``."""

from __future__ import annotations

import logging
from typing import Any

from stream_app.faustx.adapters import records
from stream_app.faustx.take import batches
from stream_app.messages import Topics
from stream_app.models.conductor import POLL_S
from stream_app.settings import Settings
from stream_app.worker.runtime import Runtime

log = logging.getLogger("stream_app.worker")


def source_topics(app: Any, topics: Topics) -> Any:
    """What the agent consumes: the input and the by-customer topic, co-partitioned, so a
    customer's events meet in one worker."""
    return app.topic(*topics.sources, key_type=bytes, value_type=bytes)


def register(app: Any, runtime: Runtime, settings: Settings, topics: Topics) -> None:
    """Add the scoring agent, the decay and log timers and the rebalance hook to ``app``."""
    window = settings.batch_window_ms / 1000.0

    @app.agent(source_topics(app, topics), name="score")  # type: ignore[untyped-decorator]
    async def score(stream: Any) -> None:
        """Score batches; ack a batch only after its effects are durable."""
        async for events in batches(stream, settings.batch_size, window):
            await runtime.handle(records(events))  # retries until done; raises when stopping
            for event in events:
                await stream.ack(event)

    @app.timer(interval=settings.decay_tick_ms / 1000.0)  # type: ignore[untyped-decorator]
    async def decay_sweep() -> None:
        """Fire decay crossings that came due on the partitions this worker owns."""
        try:
            await runtime.sweep()
        except Exception:  # a failed sweep is retried next tick; never kill the timer
            log.exception("decay sweep failed; retrying next tick")

    @app.timer(interval=POLL_S)  # type: ignore[untyped-decorator]
    async def follow_models() -> None:
        """Follow the model registry (a new shadow, a promotion or rollback)."""
        try:
            await runtime.follow_models()
        except Exception:  # tried again next tick; never kill the timer
            log.exception("following the model registry failed; retrying next tick")

    @app.task  # type: ignore[untyped-decorator]
    async def model_replay() -> None:
        """Replay the input into a shadow model while one needs it."""
        await runtime.replays()

    @app.timer(interval=30.0)  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        """Log what the worker did since the last report (counts per reason)."""
        runtime.log_stats()

    @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator]
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        """Forget the progress of partitions moved away, so it is rebuilt if they come back."""
        runtime.revoked(tp.partition for tp in revoked)

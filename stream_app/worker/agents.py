"""The worker's input, faust timers and rebalance hook: thin; the rest in ``runtime``."""

from __future__ import annotations

import logging
from typing import Any

from stream_app.faustx.adapters import records
from stream_app.faustx.intake import BatchInput, Handler
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


def register_input(app: Any, settings: Settings, topics: Topics, handle: Handler) -> None:
    """Have ``handle`` score every batch of the source topics; a batch is acked only once
    ``handle`` returns (it retries until the batch's effects are durable).

    ``ENGAGEMENT_FAUST_BATCH_INPUT`` (the default): whole fetches, through
    :class:`stream_app.faustx.intake.BatchInput` and a long-running task; otherwise
    faust's agent "score" and its stream, batched by :func:`stream_app.faustx.take.batches`.
    """
    window = settings.batch_window_ms / 1000.0
    if settings.faust_batch_input:
        intake = BatchInput.register(app, source_topics(app, topics), settings.batch_size, window)

        @app.task  # type: ignore[untyped-decorator]
        async def score() -> None:
            """Score batches; ack a batch only after its effects are durable."""
            await intake.run(handle)

        return

    @app.agent(source_topics(app, topics), name="score")  # type: ignore[untyped-decorator]
    async def score_stream(stream: Any) -> None:
        """Score batches; ack a batch only after its effects are durable."""
        async for events in batches(stream, settings.batch_size, window):
            await handle(records(events))  # retries until done; raises when stopping
            for event in events:
                await stream.ack(event)


def register(app: Any, runtime: Runtime, settings: Settings, topics: Topics) -> None:
    """Add the scoring input, the decay and log timers and the rebalance hook to ``app``."""
    register_input(app, settings, topics, runtime.handle)

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

"""The scoring agent: thin; batching and acks here, everything else in ``runtime``."""

from __future__ import annotations

import logging
from typing import Any

from stream_app.app import app, settings
from stream_app.faustx.take import batches
from stream_app.worker.runtime import runtime
from stream_app.worker.topics import sources

log = logging.getLogger("stream_app.worker")


@app.agent(sources, name="score")
async def score(stream: Any) -> None:
    """Score batches; ack a batch only after its effects are durable."""
    window = settings.batch_window_ms / 1000.0
    async for events in batches(stream, settings.batch_size, window):
        await runtime.handle(events)  # retries until done; raises only when stopping
        for event in events:
            await stream.ack(event)


@app.timer(interval=settings.decay_tick_ms / 1000.0)  # type: ignore[untyped-decorator]
async def decay_sweep() -> None:
    """Fire decay crossings that came due on the partitions this worker owns."""
    try:
        await runtime.sweep(app)
    except Exception:  # a failed sweep is retried next tick; never kill the timer
        log.exception("decay sweep failed; retrying next tick")


@app.timer(interval=30.0)  # type: ignore[untyped-decorator]
async def log_stats() -> None:
    """Log what the worker did since the last report (counts per reason)."""
    runtime.log_stats()


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def forget_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
    """Forget the progress of partitions moved away, so it is rebuilt if they come back."""
    runtime.forget({tp.partition for tp in revoked})

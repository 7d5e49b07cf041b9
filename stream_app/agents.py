"""The scoring agent: thin; batching and acks here, everything else in ``runtime``."""

from __future__ import annotations

from typing import Any

from .app import app, settings
from .runtime import runtime
from .topics import sources


@app.agent(sources, name="score")
async def score(stream: Any) -> None:
    """Score batches; ack a batch only after its effects are durable."""
    within = settings.batch_window_ms / 1000.0
    async for events in stream.noack_take(settings.batch_size, within=within):
        await runtime.handle(events)  # retries until done; raises only when stopping
        for event in events:
            await stream.ack(event)


@app.timer(interval=30.0)  # type: ignore[untyped-decorator]
async def log_stats() -> None:
    """Log what the worker did since the last report (counts per reason)."""
    runtime.log_stats()

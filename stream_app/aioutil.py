"""asyncio helpers shared by the worker and the dev tooling."""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise the cancellation of the current task if a library swallowed it.

    Python 3.11's ``asyncio.wait_for`` (redis-py wraps its socket I/O in it) returns the
    inner result when the inner operation completes as the task is cancelled: the
    ``CancelledError`` is lost, only ``Task.cancelling()`` remembers the request. Without
    this the agent goes on to wait for the next batch and a worker told to stop (SIGTERM)
    hangs until it is killed.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

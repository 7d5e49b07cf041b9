"""A worker whose by-customer path is slow: ``python -m tests.integration.slowpath worker``.

Every message the worker publishes to the by-customer topic (forwards and watermarks)
goes out ``SLOWPATH_DELAY_S`` seconds late, in order, from a queue; the batch does not
wait for it. So the by-customer partitions run seconds behind the input partitions, as
with a slow broker or a lagging consumer of that topic, while the input's event-time
progress races ahead: the decay sweep must wait for the watermarks.

Only for tests (a batch is acked before its forwards are): never a way to run a worker.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from stream_app.faustx import adapters
from stream_app.messages import OutMessage
from stream_app.settings import Settings

DELAY_S = float(os.environ.get("SLOWPATH_DELAY_S", "2.0"))
BY_CUSTOMER = Settings.from_env().by_customer_topic
_send = adapters.FaustPublisher.publish
_queue: asyncio.Queue[tuple[float, list[OutMessage]]] = asyncio.Queue()
_tasks: list[asyncio.Task[None]] = []  # (a reference, so the task is not collected)


async def _drain(publisher: Any) -> None:
    while True:
        due, messages = await _queue.get()
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await _send(publisher, messages)


async def publish(self: Any, messages: Sequence[OutMessage]) -> None:
    slow = [m for m in messages if m.topic == BY_CUSTOMER]
    await _send(self, [m for m in messages if m.topic != BY_CUSTOMER])
    if slow:
        if not _tasks:
            _tasks.append(asyncio.get_running_loop().create_task(_drain(self)))
        _queue.put_nowait((time.monotonic() + DELAY_S, slow))


adapters.FaustPublisher.publish = publish  # type: ignore[method-assign]

if __name__ == "__main__":
    from stream_app.cli.main import main

    sys.exit(main(sys.argv[1:]))

"""Batches from a faust stream, the window counted from the oldest message's arrival.

faust's ``Stream.noack_take(max_, within)`` waits ``within`` for the buffer to fill
*after every batch*: a worker that took 25 ms to score a batch still waits 20 ms more
before it looks at the messages that arrived meanwhile. Under steady traffic every
message thus waits a window it need not wait, and ``within=0`` means "until the buffer
is full", which stalls a quiet topic.

:func:`batches` is the same buffer (one stream processor fills it while the stream is
drained in the background, events are yielded un-acked, at most ``max_`` at a time),
with one difference: the window is the longest the *oldest* buffered message waits for
company, counted from when faust handed it over. Messages that arrived while the last
batch was scored are already that old, so the next batch starts at once with all of
them (those still in the stream's queue included, up to ``max_``); a quiet worker
still batches a burst for up to the window; ``window`` 0 takes whatever has arrived.
It uses faust's stream the way ``noack_take`` does (a processor, the passive drainer,
the current event), in faust-streaming 0.15.3, and the stream channel's queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from stream_app.faustx.compat import FaustIncompatible

__all__ = ["batches"]


class _Buffer:
    """The batch being gathered: a stream processor (:meth:`add`) fills it."""

    def __init__(self, stream: Any, max_: int) -> None:
        self.stream, self.max = stream, max_
        self.loop = asyncio.get_running_loop()
        self.events: list[Any] = []
        self.arrived, self.full, self.consumed = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.consuming: asyncio.Future[None] | None = None  # set while a batch is out
        self.first_at = 0.0  # when the oldest buffered event was handed over (loop time)

    async def add(self, value: Any) -> Any:
        """The stream processor: buffer the current event (the value passes through)."""
        handed = self.loop.time()
        try:
            await self._add(handed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as faust's take: the stream crashes, visibly
            self.stream.log.exception("Error adding to take buffer: %r", exc)
            await self.stream.crash(exc)
        return value

    async def _add(self, handed: float) -> None:
        if self.consuming is not None:  # the caller is busy with a batch: wait for it
            try:
                await self.consuming
            finally:
                self.consuming = None
        event = self.stream.current_event
        if event is None:
            raise FaustIncompatible("take buffer found current_event is None")
        if not self.events:
            self.first_at = handed
        self.events.append(event)
        self.arrived.set()
        if len(self.events) >= self.max:  # never more than max_: wait until it is taken
            self.full.set()
            self.consumed.clear()
            await self.stream.wait(self.consumed)

    async def ready(self, window: float) -> bool:
        """Wait until a batch is due; False if the buffer is still empty (stopping)."""
        if not self.events:
            await self.stream.wait_for_stopped(self.arrived)
            return False
        if not self.full.is_set():
            left = self.first_at + window - self.loop.time()
            if left > 0:
                await self.stream.wait_for_stopped(self.full, timeout=left)
            else:
                await self._drain()
        return True

    async def _drain(self) -> None:
        """Let the messages faust has already delivered (in the stream's queue) join the
        batch, up to ``max_``. Bounded, in case the drainer is held elsewhere."""
        queue = self.stream.channel.queue
        for _ in range(self.max):
            await asyncio.sleep(0)
            if self.full.is_set() or not queue.qsize():
                return

    def take(self) -> list[Any]:
        """The batch; later events wait (in :meth:`add`) until :meth:`taken`."""
        self.consuming = self.loop.create_future()
        return list(self.events)

    def taken(self) -> None:
        self.events.clear()
        self.arrived.clear()
        self.full.clear()
        if self.consuming is not None and not self.consuming.done():
            self.consuming.set_result(None)
        self.consumed.set()


async def batches(stream: Any, max_: int, window: float) -> AsyncGenerator[list[Any], None]:
    """Yield lists of up to ``max_`` un-acked events; the oldest waits at most ``window``
    seconds (from its hand-over) for more. The caller acks them."""
    if max_ < 1 or window < 0:
        raise ValueError(f"max_ must be >= 1 and window >= 0, got {max_}, {window}")
    buffer = _Buffer(stream, max_)
    enable_acks = stream.enable_acks
    stream.enable_acks = False  # the caller acks, once the batch is durable
    stream.add_processor(buffer.add)
    stream._enable_passive(aiter(stream.channel))  # as noack_take: drain in the background
    try:
        while not stream.should_stop:
            if not await buffer.ready(window):
                continue
            try:
                yield buffer.take()
            finally:
                buffer.taken()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(buffer.add)

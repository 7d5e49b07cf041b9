"""The batch input path's buffer: whole fetches in, batches out, bounded.

:class:`Inbox` sits between faust's fetcher (:mod:`.intake`, which puts each fetch's
records in at once) and the task that scores them (which takes a batch at a time). It
keeps the batching rules of :mod:`.take`:

- a batch holds at most ``max_batch`` records;
- the oldest buffered record waits at most ``window`` seconds for company, counted from
  when its fetch was put in, so records that arrived while the previous batch was scored
  are already that old and the next batch starts at once with all of them; ``window`` 0
  takes whatever has arrived;
- the buffer is bounded: a put waits while ``max_batch`` records or more are buffered
  (the fetcher then stops fetching), so at most ``max_batch - 1`` plus one fetch wait
  here besides the batch being scored (the worker's fetches hold at most a batch:
  ``broker_max_poll_records`` in :func:`stream_app.app.create_app`).

:meth:`Inbox.clear` drops what is buffered and every put still waiting for room (it
returns False): faust calls it through its flow control when partitions are revoked,
as it clears its streams' queues, and seeks every partition back to its committed
offset before fetching again, so nothing dropped here is lost. Plain asyncio, no faust.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from stream_app.messages import Record

__all__ = ["Inbox"]


class Inbox:
    """A bounded buffer of fetched records, taken out in batches (see the module)."""

    def __init__(self, max_batch: int, window: float) -> None:
        if max_batch < 1 or window < 0:
            raise ValueError(f"max_batch must be >= 1 and window >= 0, got {max_batch}, {window}")
        self.max_batch, self.window = max_batch, window
        self._chunks: deque[tuple[float, list[Record]]] = deque()  # (put at, records)
        self._size = 0
        self._epoch = 0  # bumped by clear(): a put waiting across it is dropped
        self._wake = asyncio.Event()  # a first record, or a full batch: get() looks again
        self._room = asyncio.Event()  # fewer than max_batch buffered: put() may go on
        self._room.set()

    def __len__(self) -> int:
        return self._size

    def has_room(self) -> bool:
        """True when :meth:`put_nowait` may be called (fewer than ``max_batch`` buffered)."""
        return self._size < self.max_batch

    def put_nowait(self, records: Sequence[Record]) -> None:
        """Buffer one fetch's records (the caller checked :meth:`has_room`)."""
        if not records:
            return
        was_empty = not self._size
        self._chunks.append((asyncio.get_running_loop().time(), list(records)))
        self._size += len(records)
        if self._size >= self.max_batch:
            self._room.clear()
            self._wake.set()
        elif was_empty:
            self._wake.set()

    async def put(self, records: Sequence[Record]) -> bool:
        """Buffer one fetch's records once there is room: True; False when :meth:`clear`
        came first (the records are dropped)."""
        epoch = self._epoch
        while not self.has_room():
            await self._room.wait()
            if self._epoch != epoch:
                return False
        self.put_nowait(records)
        return True

    async def get(self) -> list[Record]:
        """The next batch, once it is due (see the module); never empty."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._size:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._size < self.max_batch:
                left = self._chunks[0][0] + self.window - loop.time()
                if left > 0:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(left):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    continue  # look again: full, due, or cleared meanwhile
            return self._take()

    def _take(self) -> list[Record]:
        batch: list[Record] = []
        chunks = self._chunks
        while chunks and len(batch) < self.max_batch:
            put_at, records = chunks[0]
            room = self.max_batch - len(batch)
            if len(records) <= room:
                batch.extend(records)
                chunks.popleft()
            else:  # the rest keeps its time: it is as old as the part taken
                batch.extend(records[:room])
                chunks[0] = (put_at, records[room:])
        self._size -= len(batch)
        if self.has_room():
            self._room.set()
        return batch

    def clear(self) -> None:
        """Drop every buffered record, and every put waiting for room."""
        self._chunks.clear()
        self._size = 0
        self._epoch += 1
        self._room.set()

"""Batches may overlap each other; the decay sweep runs alone, and goes first.

Two batches overlap in a worker: the next one is read and folded while the one before is
published and written (``stream_app.flow``). The sweep reads, fires and writes customers
too, so it must not run beside either: a batch folded on a record the sweep then rewrites
would publish changes from a stale state. A sweep waiting here stops new batches from
entering, waits for those inside to finish, runs, and lets them in again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class Gate:
    """Shared entry for batches, exclusive entry for sweeps; a waiting sweep goes first.

    >>> import asyncio
    >>> async def demo() -> tuple[int, int]:
    ...     gate = Gate()
    ...     await gate.enter_batch()
    ...     await gate.enter_batch()
    ...     inside = gate.batches
    ...     gate.leave_batch()
    ...     gate.leave_batch()
    ...     async with gate.sweep():
    ...         pass
    ...     return inside, gate.sweeps
    >>> asyncio.run(demo())
    (2, 1)
    """

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []
        #: Batches inside now.
        self.batches = 0
        self._sweep_waiting = 0
        self._sweeping = False
        #: Sweeps that ran so far: a batch folded on records read before a sweep compares it.
        self.sweeps = 0

    @property
    def waiting(self) -> int:
        """Batches and sweeps waiting to enter."""
        return len(self._waiters)

    async def enter_batch(self) -> None:
        """Wait while a sweep waits or runs, then count one more batch inside."""
        await self._until(lambda: not (self._sweeping or self._sweep_waiting))
        self.batches += 1

    def leave_batch(self) -> None:
        """One batch fewer inside (never waits: callable from any ``finally``)."""
        if self.batches <= 0:
            raise RuntimeError("leave_batch without enter_batch")
        self.batches -= 1
        self._wake()

    @asynccontextmanager
    async def sweep(self) -> AsyncIterator[None]:
        """Run alone: no batch inside and no other sweep."""
        self._sweep_waiting += 1
        try:
            await self._until(lambda: not (self.batches or self._sweeping))
        finally:
            self._sweep_waiting -= 1
            self._wake()  # (a cancelled sweep must not hold batches off)
        self._sweeping = True
        try:
            yield
        finally:
            self.sweeps += 1
            self._sweeping = False
            self._wake()

    async def _until(self, ready: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        while not ready():
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Every waiter checks its condition again (state changes are synchronous)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

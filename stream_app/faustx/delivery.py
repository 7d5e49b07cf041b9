"""Eager delivery: faust's fetcher without four tasks per message.

``Consumer._drain_messages`` (faust-streaming 0.15.3) hands every fetched message to the
streams with ``await self.wait_first(callback(message), self.suspend_flow.wait())``.
``wait_first`` wraps each argument in a task, adds two more (the consumer stopped,
crashed), waits for the first, then cancels the other three: four tasks per message for
a delivery that, almost always, finishes without waiting for anything (the stream's
buffer has room, the flow is not suspended). Measured on the do-nothing ceiling, this
is ~40 % of faust's per-message CPU (docs/performance.md).

:func:`install` replaces ``Consumer.wait_first`` by a version that first runs the
delivery coroutine one step, in place. When it finishes in that step, that is its
result, exactly as if the task had run. When it must wait (a full stream buffer, a
suspended flow, the producer's buffer, the conductor's lock), the started coroutine is
handed to faust's own ``wait_first`` unchanged (:class:`_Resumed` continues it), so a
rebalance still abandons a delivery blocked on a full buffer, as before. Every other
use of ``wait_first`` goes straight to the original.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from stream_app.faustx.compat import FaustIncompatible

__all__ = ["install", "installed", "run_eagerly", "uninstall"]

_ORIGINAL_ATTR = "_engagement_original_wait_first"


class _Resumed:
    """Awaiting it goes on awaiting ``coro``, which already yielded ``first`` to the loop.

    An iterator, not a generator, so that a task cancelled before its first step still
    throws the cancellation into ``coro`` (where it waits), rather than into a generator
    that has not started. Values the loop sends and exceptions it throws in go to
    ``coro``; what ``coro`` yields goes to the loop; its ``StopIteration`` is the result.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro, self.first, self.started = coro, first, False

    def __await__(self) -> _Resumed:
        return self

    def __iter__(self) -> _Resumed:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        if not self.started:
            self.started = True
            return self.first  # what coro yielded in its first step, still awaited
        return self.coro.send(value)

    def throw(self, *exc: Any) -> Any:
        self.started = True
        return self.coro.throw(*exc)

    def close(self) -> None:
        self.coro.close()


def run_eagerly(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Run ``coro`` one step: ``(True, result)`` if it finished, else ``(False, rest)``,
    where ``rest`` is an awaitable that finishes it (its exceptions propagate).

    >>> async def add(a, b):
    ...     return a + b
    >>> run_eagerly(add(1, 2))
    (True, 3)
    """
    try:
        first = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, _Resumed(coro, first)


def installed() -> bool:
    """True when :func:`install` patched faust's Consumer."""
    from faust.transport.consumer import Consumer

    return hasattr(Consumer, _ORIGINAL_ATTR)


def install() -> None:
    """Patch ``faust.transport.consumer.Consumer.wait_first`` (idempotent, process-wide)."""
    from faust.transport.consumer import Consumer
    from mode.services import WaitResults

    if installed():
        return
    if "wait_first" in Consumer.__dict__:
        raise FaustIncompatible(
            "stream_app.faustx.delivery: faust's Consumer defines its own wait_first now; "
            "check _drain_messages before patching it"
        )
    original = Consumer.wait_first

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if len(coros) == 2 and timeout is None and asyncio.iscoroutine(coros[0]):
            deliver, flow = coros  # _drain_messages: (callback(message), suspend_flow.wait())
            if asyncio.iscoroutine(flow) and not self.suspend_flow.is_set():
                done, outcome = run_eagerly(deliver)
                if done:
                    flow.close()  # never started: nothing to cancel
                    return WaitResults([deliver], [outcome], False)
                return await original(self, outcome, flow)
        return await original(self, *coros, timeout=timeout)

    setattr(Consumer, _ORIGINAL_ATTR, original)
    Consumer.wait_first = wait_first  # type: ignore[method-assign]


def uninstall() -> None:
    """Undo :func:`install`."""
    from faust.transport.consumer import Consumer

    if installed():
        delattr(Consumer, "wait_first")  # mode's Service.wait_first again
        delattr(Consumer, _ORIGINAL_ATTR)

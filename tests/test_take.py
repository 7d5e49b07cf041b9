"""stream_app.faustx.take.batches on a real faust stream (faust's own agent test context: an
in-memory channel instead of a topic): full batches go at once, a batch's window counts
from its oldest message, so messages that waited through the previous batch are taken
at once, and a window of 0 takes what has arrived."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import pytest

from stream_app.faustx.take import batches

app = faust.App("take-test", web_enabled=False)
Batch = tuple[list[int], float]  # values, monotonic time the batch was yielded


async def wait_until(cond: Callable[[], bool], deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.005)


def make_agent(
    max_: int, window: float, got: list[Batch], hold: Callable[[int], Awaitable[None]]
) -> Any:
    async def agent(stream: Any) -> None:
        async for events in batches(stream, max_, window):
            got.append(([e.value for e in events], time.monotonic()))
            await hold(len(got))
            for e in events:
                await stream.ack(e)

    return app.agent(app.channel(), name=f"take-{max_}-{window}-{len(app.agents)}")(agent)


async def no_hold(n: int) -> None:
    return None


def test_full_batches_go_at_once_and_the_rest_waits_for_the_window() -> None:
    got: list[Batch] = []

    async def main() -> float:
        async with make_agent(3, 0.3, got, no_hold).test_context() as agent:
            began = time.monotonic()
            for i in range(7):
                await agent.put(i, wait=False)
            await wait_until(lambda: sum(len(v) for v, _ in got) == 7)
            return began

    began = asyncio.run(main())
    assert [v for v, _ in got] == [[0, 1, 2], [3, 4, 5], [6]]
    assert got[1][1] - began < 0.3  # full: not held for the window
    assert got[2][1] - began >= 0.3  # alone: waited the window for company


def test_messages_that_waited_through_a_batch_are_taken_at_once() -> None:
    """faust's noack_take would wait another window after the slow batch."""
    got: list[Batch] = []
    release = asyncio.Event()
    released: list[float] = []

    async def slow_first(n: int) -> None:
        if n == 1:  # the first batch takes longer than the window to score
            await release.wait()
            released.append(time.monotonic())

    async def main() -> None:
        async with make_agent(100, 1.0, got, slow_first).test_context() as agent:
            await agent.put(0, wait=False)
            await wait_until(lambda: len(got) == 1)  # (after its 1 s window)
            for i in range(1, 6):
                await agent.put(i, wait=False)
            await asyncio.sleep(1.2)  # the first batch is still being scored (not a sync)
            release.set()
            await wait_until(lambda: len(got) == 2)

    asyncio.run(main())
    assert [v for v, _ in got] == [[0], [1, 2, 3, 4, 5]]
    assert got[1][1] - released[0] < 0.5  # at once, not a second window later


def test_window_zero_takes_what_has_arrived() -> None:
    got: list[Batch] = []

    async def main() -> None:
        async with make_agent(500, 0.0, got, no_hold).test_context() as agent:
            await agent.put(41, wait=False)
            await wait_until(lambda: len(got) == 1)  # noack_take(within=0) waits for 500
            await agent.put(42, wait=False)
            await wait_until(lambda: len(got) == 2)

    asyncio.run(main())
    assert [v for v, _ in got] == [[41], [42]]


@pytest.mark.parametrize(("max_", "window"), [(0, 0.1), (10, -1.0)])
def test_bad_arguments_are_refused(max_: int, window: float) -> None:
    async def main() -> None:
        await anext(batches(object(), max_, window))

    with pytest.raises(ValueError, match="max_ must be >= 1"):
        asyncio.run(main())


def test_closing_the_batches_gives_the_stream_back_as_it_was() -> None:
    """The processor is removed and faust's acks restored, as noack_take does."""
    seen: list[tuple[bool, int, bool, int]] = []

    async def agent(stream: Any) -> None:
        acks, processors = stream.enable_acks, len(stream._processors)
        gen = batches(stream, 10, 0.0)
        async for events in gen:
            during = (stream.enable_acks, len(stream._processors))
            for e in events:
                await stream.ack(e)
            break
        await gen.aclose()
        seen.append((*during, stream.enable_acks == acks, len(stream._processors) - processors))

    async def main() -> None:
        named = app.agent(app.channel(), name=f"take-close-{len(app.agents)}")(agent)
        async with named.test_context() as running:
            await running.put(1, wait=False)
            await wait_until(lambda: bool(seen))

    asyncio.run(main())
    (acks_during, processors_during, acks_restored, processors_left) = seen[0]
    assert acks_during is False and processors_during >= 1
    assert acks_restored and processors_left == 0

"""stream_app.faustx.inbox.Inbox: the batch input path's buffer. Whole fetches in, batches
of at most ``max_batch`` out, the oldest record waiting at most ``window`` for company;
bounded (a put waits for room); cleared on a rebalance, puts waiting across it dropped."""

from __future__ import annotations

import asyncio
import time

import pytest

from stream_app.faustx.inbox import Inbox
from stream_app.messages import Record


def recs(first: int, n: int, partition: int = 0) -> list[Record]:
    return [Record("t", partition, o, b"k", b"v") for o in range(first, first + n)]


def offsets(batch: list[Record]) -> list[int]:
    return [r.offset for r in batch]


async def until(cond: object, deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.001)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Inbox(0, 0.1)
    with pytest.raises(ValueError, match="window"):
        Inbox(10, -1)


def test_full_batches_go_at_once_and_the_rest_waits_for_the_window() -> None:
    async def main() -> tuple[list[list[int]], float, float]:
        inbox = Inbox(3, 0.3)
        inbox.put_nowait(recs(0, 7))  # one fetch, more than two batches
        began = time.monotonic()
        first = offsets(await inbox.get())
        second = offsets(await inbox.get())
        full_at = time.monotonic() - began
        third = offsets(await inbox.get())
        return [first, second, third], full_at, time.monotonic() - began

    got, full_at, alone_at = asyncio.run(main())
    assert got == [[0, 1, 2], [3, 4, 5], [6]]
    assert full_at < 0.3  # full: not held for the window
    assert alone_at >= 0.29  # alone: waited (about) the window, counted from its put


def test_records_that_waited_through_a_batch_are_taken_at_once() -> None:
    async def main() -> tuple[list[int], float]:
        inbox = Inbox(100, 0.2)
        inbox.put_nowait(recs(0, 1))
        await inbox.get()  # waits its window
        inbox.put_nowait(recs(1, 3))
        await asyncio.sleep(0.25)  # "scoring" the first batch, longer than the window
        began = time.monotonic()
        batch = await inbox.get()
        return offsets(batch), time.monotonic() - began

    batch, waited = asyncio.run(main())
    assert batch == [1, 2, 3]
    assert waited < 0.1  # already older than the window: no second wait


def test_window_zero_takes_what_has_arrived() -> None:
    async def main() -> list[list[int]]:
        inbox = Inbox(100, 0.0)
        inbox.put_nowait(recs(0, 2))
        inbox.put_nowait(recs(2, 1, partition=1))
        first = offsets(await inbox.get())
        inbox.put_nowait(recs(3, 1))
        return [first, offsets(await inbox.get())]

    assert asyncio.run(main()) == [[0, 1, 2], [3]]


def test_a_get_waits_for_the_first_record() -> None:
    async def main() -> list[int]:
        inbox = Inbox(10, 0.0)
        getter = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0.05)
        assert not getter.done()
        inbox.put_nowait(recs(5, 2))
        return offsets(await asyncio.wait_for(getter, 5))

    assert asyncio.run(main()) == [5, 6]


def test_a_put_waits_while_a_batch_is_buffered_and_goes_on_when_it_is_taken() -> None:
    async def main() -> tuple[int, bool, list[int], list[int]]:
        inbox = Inbox(4, 10.0)
        assert await inbox.put(recs(0, 3))  # room: in at once
        assert await inbox.put(recs(3, 3))  # 3 < 4 buffered: in, now 6 (one fetch over)
        assert not inbox.has_room()
        waiting = asyncio.ensure_future(inbox.put(recs(6, 2)))
        await asyncio.sleep(0.05)
        held = len(inbox)
        blocked = not waiting.done()
        first = offsets(await inbox.get())  # 4 taken: 2 left, room again
        assert await asyncio.wait_for(waiting, 5)
        second = offsets(await inbox.get())
        return held, blocked, first, second

    held, blocked, first, second = asyncio.run(main())
    assert held == 6 and blocked  # bounded: the third fetch waited
    assert first == [0, 1, 2, 3]
    assert second == [4, 5, 6, 7]  # nothing lost, order kept


def test_clear_drops_the_buffer_and_a_put_waiting_across_it() -> None:
    async def main() -> tuple[bool, int, list[int]]:
        inbox = Inbox(2, 0.0)
        inbox.put_nowait(recs(0, 2))
        waiting = asyncio.ensure_future(inbox.put(recs(2, 2)))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        inbox.clear()  # a rebalance: faust seeks back to the committed offsets
        put = await asyncio.wait_for(waiting, 5)
        size = len(inbox)
        inbox.put_nowait(recs(0, 1))  # read again after the seek
        return put, size, offsets(await inbox.get())

    put, size, after = asyncio.run(main())
    assert put is False  # the waiting fetch was dropped, not put in after the clear
    assert size == 0
    assert after == [0]


def test_a_get_waiting_for_its_window_sees_a_clear() -> None:
    async def main() -> list[int]:
        inbox = Inbox(10, 0.2)
        inbox.put_nowait(recs(0, 1))
        getter = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0.05)
        inbox.clear()
        await asyncio.sleep(0.3)  # past the window of the dropped record
        assert not getter.done()  # nothing to take: still waiting
        inbox.put_nowait(recs(9, 1))
        return offsets(await asyncio.wait_for(getter, 5))

    assert asyncio.run(main()) == [9]

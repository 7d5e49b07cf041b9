"""The eager delivery patch: same outcomes as faust's wait_first, without its tasks when
a delivery does not wait, and faust's own behaviour when it does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import mode
import pytest
from faust.transport.consumer import Consumer

from stream_app.faustx import delivery as faust_delivery
from stream_app.faustx.delivery import run_eagerly


@pytest.fixture
def patched() -> Iterator[None]:
    was = faust_delivery.installed()
    faust_delivery.install()
    try:
        yield
    finally:
        if not was:
            faust_delivery.uninstall()


class FakeConsumer(mode.Service):
    """Just what wait_first needs: a mode Service with faust's suspend_flow event."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = mode.utils.locks.Event()


async def immediate(log: list[str]) -> str:
    log.append("ran")
    return "delivered"


async def blocked(
    gate: asyncio.Future[str], log: list[str], started: asyncio.Event | None = None
) -> str:
    if started is not None:
        started.set()
    try:
        return await gate
    finally:
        log.append("cleaned up")


def test_a_coroutine_that_never_waits_finishes_in_place() -> None:
    log: list[str] = []
    assert run_eagerly(immediate(log)) == (True, "delivered")
    assert log == ["ran"]


def test_a_coroutine_that_waits_is_finished_by_awaiting_the_rest() -> None:
    async def main() -> Any:
        gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        done, rest = run_eagerly(blocked(gate, []))
        assert not done
        task = asyncio.ensure_future(rest)
        gate.set_result("late")
        return await task

    assert asyncio.run(main()) == "late"


def test_errors_and_cancellation_reach_the_started_coroutine() -> None:
    async def main() -> tuple[list[str], bool]:
        loop = asyncio.get_running_loop()
        failing: asyncio.Future[str] = loop.create_future()
        _, rest = run_eagerly(blocked(failing, []))
        task = asyncio.ensure_future(rest)
        failing.set_exception(KeyError("boom"))
        with pytest.raises(KeyError):
            await task
        log: list[str] = []
        _, rest = run_eagerly(blocked(loop.create_future(), log))
        task = asyncio.ensure_future(rest)
        task.cancel()  # even before the task's first step, the coroutine gets it
        with pytest.raises(asyncio.CancelledError):
            await task
        return log, task.cancelled()

    assert asyncio.run(main()) == (["cleaned up"], True)


def test_patched_wait_first_delivers_in_place_when_nothing_waits(patched: None) -> None:
    async def main() -> tuple[Any, list[str], Any]:
        consumer = FakeConsumer()
        log: list[str] = []
        flow = consumer.suspend_flow.wait()
        tasks_before = len(asyncio.all_tasks())
        result = await Consumer.wait_first(consumer, immediate(log), flow)  # type: ignore[arg-type]
        return result, log, (flow.cr_frame, len(asyncio.all_tasks()) - tasks_before)

    result, log, (flow_frame, new_tasks) = asyncio.run(main())
    assert (result.results, result.stopped, log) == (["delivered"], False, ["ran"])
    assert flow_frame is None and new_tasks == 0  # the flow wait was closed, no task made


def test_patched_wait_first_still_abandons_a_blocked_delivery_when_the_flow_stops(
    patched: None,
) -> None:
    async def main() -> tuple[list[str], list[str]]:
        consumer = FakeConsumer()
        log: list[str] = []
        gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        started = asyncio.Event()
        delivery = blocked(gate, log, started)  # waits, like a put into a full buffer
        flow = consumer.suspend_flow.wait()
        waiting = asyncio.ensure_future(Consumer.wait_first(consumer, delivery, flow))  # type: ignore[arg-type]
        await started.wait()
        consumer.suspend_flow.set()  # a rebalance suspends the flow
        result = await asyncio.wait_for(waiting, timeout=10)
        return list(result.results), log

    results, log = asyncio.run(main())
    assert results == [True]  # the flow's wait won, as with faust's own wait_first
    assert log == ["cleaned up"]  # and the blocked delivery was cancelled


def test_install_is_idempotent_and_uninstall_restores_mode(patched: None) -> None:
    patched_fn = Consumer.wait_first
    faust_delivery.install()
    assert Consumer.wait_first is patched_fn
    faust_delivery.uninstall()
    assert Consumer.wait_first is mode.Service.wait_first
    faust_delivery.install()
    assert faust_delivery.installed()

"""`dev` stops on Ctrl-C even when redis-py swallows the cancellation (Python 3.11's
``asyncio.wait_for`` returns the inner result when it completes as the task is
cancelled): a race the NPS poller could lose on any Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib

from stream_app.devkit.live import View, poll_nps


class SwallowingStore:
    """Answers like Redis, and loses a cancellation that lands during the call, as
    redis-py's ``wait_for`` does when the reply is already there."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = asyncio.Event()

    async def nps_counts(self) -> dict[str, int]:
        self.calls += 1
        self.entered.set()
        # the reply won the race: the caller gets it, not the cancellation
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        return {"2026-11-23|*|promoter": 3, "2026-11-23|*|detractor": 1}


def test_a_cancel_swallowed_by_the_redis_call_still_stops_the_poller() -> None:
    async def scenario() -> tuple[bool, int, View]:
        store, view = SwallowingStore(), View(customers=1, tiers=["cold"])
        task = asyncio.create_task(poll_nps(store, view, every_s=0.0))
        await asyncio.wait_for(store.entered.wait(), 5)
        task.cancel()  # what asyncio.run does with the main task on Ctrl-C
        done, _ = await asyncio.wait({task}, timeout=5)
        if not done:
            task.cancel()  # (a second time, so the test itself ends)
        return bool(done) and task.cancelled(), store.calls, view

    stopped, calls, _view = asyncio.run(scenario())
    assert stopped
    assert calls == 1  # no second poll after the cancellation


def test_the_poller_shows_nps_from_the_counts() -> None:
    async def scenario() -> View:
        class Store:
            async def nps_counts(self) -> dict[str, int]:
                return {"2026-11-23|*|promoter": 3, "2026-11-23|*|detractor": 1,
                        "2026-11-23|cold|promoter": 3}  # fmt: skip

        view = View(customers=1, tiers=["cold"])
        task = asyncio.create_task(poll_nps(Store(), view, every_s=3600))
        for _ in range(100):  # the first poll needs one loop turn or so
            if view.responses:
                break
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return view

    view = asyncio.run(scenario())
    assert view.responses == 4
    assert view.nps == 50.0

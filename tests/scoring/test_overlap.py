"""Overlapping batches in the worker's runtime (``Runtime.submit``), over an in-memory
store: the next batch is folded on what the batch in flight will write, and kept only
when that write won every fence and no decay sweep ran in between; and the gate that
keeps sweeps apart from batches.

The property that overlapped batches fire what one offline pass gives runs with the
firing rule's (``test_firing_rule.py``); these are the runtime's own cases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
import redis.exceptions
from memstore import Collect, MemoryStore

from scoring import decode_state, load_default_model
from stream_app.gate import Gate
from stream_app.pipeline import BatchProcessor, OutMessage, Record, Topics, expected_partition
from stream_app.runtime import Runtime
from stream_app.store import StoredRecord

MODEL = load_default_model()
PARTITIONS = 4
T = 1_700_000_000_000
TOPICS = Topics("in", "in.by-customer", "out", "dlq", PARTITIONS)


def message(offset: int, cid: str, etype: str, *, topic: str = "in") -> Any:
    """A faust event as the runtime reads it (``event.message``)."""
    doc = {"event_id": f"e{offset}", "customer_id": cid, "type": etype,
           "timestamp": T + offset * 1000}  # fmt: skip
    p = expected_partition(cid, PARTITIONS)
    return SimpleNamespace(
        message=SimpleNamespace(
            topic=topic,
            partition=p,
            offset=offset,
            key=cid.encode(),
            value=orjson.dumps(doc),
            timestamp=None,
        )
    )


class Store(MemoryStore):
    """Remembers which customers each read asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[list[str]] = []

    async def load(self, ids: Sequence[str]) -> dict[str, StoredRecord]:
        self.loaded.append(list(ids))
        return await super().load(ids)


class Publisher(Collect):
    """Runs ``before`` ahead of each publish (it may block or raise)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.before: Callable[[int], Any] | None = None

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        self.calls += 1
        if self.before is not None:
            await self.before(self.calls)
        await super().publish(messages)


def processor(store: MemoryStore, publisher: Collect) -> BatchProcessor:
    return BatchProcessor(
        model=MODEL, topics=TOPICS, store=cast(Any, store), publisher=publisher,
        clock=lambda: T / 1000 + 3600,
    )  # fmt: skip


def runtime(store: MemoryStore, publisher: Collect) -> Runtime:
    rt = Runtime()
    rt._processor = processor(store, publisher)
    return rt


def records(batch: Sequence[Any]) -> list[Record]:
    return Runtime.records(batch)


def sequential(*batches: Sequence[Any], store: MemoryStore | None = None) -> tuple[Store, Collect]:
    """The batches one after the other, as a worker without overlap does them."""
    store = store or Store()
    publisher = Collect()
    proc = processor(store, publisher)

    async def run() -> None:
        for batch in batches:
            await proc.process(records(batch))

    asyncio.run(run())
    return cast(Store, store), publisher


async def until(condition: Callable[[], object], steps: int = 1000) -> None:
    """Let the event loop run until ``condition()`` holds (a bounded number of turns)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)  # a turn of the loop, not a wait for time
    raise AssertionError("condition not reached")


def states(store: MemoryStore) -> dict[str, Any]:
    return {cid: decode_state(r.state, MODEL) for cid, r in store.records.items() if r.state}


A = [message(0, "c1", "email_click"), message(1, "c2", "web_visit")]
B = [message(2, "c1", "review_submitted"), message(3, "c3", "loyalty_join")]


def test_the_next_batch_is_folded_while_the_one_before_is_in_flight() -> None:
    store, publisher, acked = Store(), Publisher(), []
    rt = runtime(store, publisher)
    loads_at_publish: list[int] = []

    async def before(call: int) -> None:
        loads_at_publish.append(len(store.loaded))

    async def ack(event: Any) -> None:
        acked.append((event.message.offset, publisher.calls))

    publisher.before = before

    async def run() -> None:
        await rt.submit(A, ack)
        await rt.submit(B, ack)
        await rt.drain(timeout=5)

    asyncio.run(run())
    assert loads_at_publish == [2, 2]  # B was read and folded before A was published
    assert store.loaded[1] == ["c3"]  # c1 came from what A writes, not from the store
    # acked once durable, in order: A's after its publish, before B's
    assert acked == [(0, 1), (1, 1), (2, 2), (3, 2)]
    want_store, want_out = sequential(A, B)
    assert store.records == want_store.records
    assert [m.value for m in publisher.sent] == [m.value for m in want_out.sent]
    assert rt.gate.batches == 0


def stranger_record(*batches: Sequence[Any]) -> StoredRecord:
    """c1's record as another worker leaves it after processing ``batches``."""
    other, _ = sequential(*batches)
    return other.records["c1"]


def test_a_batch_folded_on_a_write_that_lost_its_fence_is_folded_again() -> None:
    """Another worker scored c1's ``contest_entry`` and A's event before A's write: A's
    write loses and A finds its event applied. B, folded on A's record, must be folded
    again on the other worker's, or the ``contest_entry`` would be lost."""
    extra = message(9, "c1", "contest_entry", topic="in.by-customer")
    store, publisher = Store(), Publisher()
    rt = runtime(store, publisher)
    theirs = stranger_record([extra, A[0]])  # one batch: version 1, as A would write

    async def before(call: int) -> None:
        if call == 1:
            store.records["c1"] = theirs

    publisher.before = before

    async def run() -> None:
        await rt.submit(A, ack)
        await rt.submit(B, ack)
        await rt.drain(timeout=5)

    async def ack(event: Any) -> None:
        pass

    asyncio.run(run())
    assert "c1" in store.loaded[-1]  # B read c1 again
    want, _ = sequential([extra], A, B)
    assert states(store)["c1"] == states(want)["c1"]
    assert store.records["c1"].version == 2  # the other worker's, then B's


def test_a_batch_after_a_sweep_reads_what_the_sweep_wrote() -> None:
    """A sweep waiting at the gate keeps B out until A is done, runs alone, and B then
    reads its customers from the store: the sweep may have rewritten them."""
    store, publisher = Store(), Publisher()
    rt = runtime(store, publisher)
    release = asyncio.Event()
    seen: list[int] = []

    async def before(call: int) -> None:
        if call == 1:
            await release.wait()

    async def ack(event: Any) -> None:
        seen.append(event.message.offset)

    async def sweep() -> None:
        async with rt.gate.sweep():
            assert (rt.gate.batches, seen) == (0, [0, 1])  # A is done, B not in
            old = store.records["c1"]
            store.records["c1"] = StoredRecord(old.version + 1, old.marks, old.state, None)

    publisher.before = before

    async def run() -> None:
        await rt.submit(A, ack)
        sweeper = asyncio.create_task(sweep())
        await until(lambda: rt.gate.waiting == 1)
        second = asyncio.create_task(rt.submit(B, ack))
        await until(lambda: rt.gate.waiting == 2)  # B waits behind the sweep
        release.set()
        await sweeper
        await second
        await rt.drain(timeout=5)

    asyncio.run(run())
    assert store.loaded == [["c1", "c2"], ["c1", "c3"]]  # B read c1, and lost no fence
    assert store.records["c1"].version == 3  # A's, the sweep's, B's: no fence lost
    assert seen == [0, 1, 2, 3]


def test_a_failed_batch_is_done_again_and_the_next_one_folded_again() -> None:
    store, publisher, acked = Store(), Publisher(), []
    rt = runtime(store, publisher)

    async def before(call: int) -> None:
        if call == 1:
            raise redis.exceptions.ConnectionError("the broker went away")

    async def ack(event: Any) -> None:
        acked.append(event.message.offset)

    publisher.before = before

    async def run() -> None:
        await rt.submit(A, ack)
        await rt.submit(B, ack)
        await rt.drain(timeout=5)

    asyncio.run(run())
    assert acked == [0, 1, 2, 3]
    assert len(store.loaded) == 4  # A, B beside A, A again, B again
    want_store, want_out = sequential(A, B)
    assert store.records == want_store.records
    assert [m.value for m in publisher.sent] == [m.value for m in want_out.sent]


@pytest.mark.parametrize("stuck", [False, True])
def test_drain_lets_the_batch_in_flight_finish_or_cancels_it(stuck: bool) -> None:
    store, publisher, acked = Store(), Publisher(), []
    rt = runtime(store, publisher)
    never = asyncio.Event()

    async def before(call: int) -> None:
        if stuck:
            await never.wait()

    async def ack(event: Any) -> None:
        acked.append(event.message.offset)

    publisher.before = before

    async def run() -> None:
        await rt.submit(A, ack)
        await rt.drain(timeout=0.2 if stuck else 5)

    asyncio.run(run())
    assert acked == ([] if stuck else [0, 1])  # cancelled: redelivered later, not acked
    assert bool(store.records) is not stuck
    assert rt.gate.batches == 0


# ------------------------------------------------------------------------- the gate


def test_a_waiting_sweep_goes_before_batches_that_come_after_it() -> None:
    gate, log = Gate(), []

    async def sweep() -> None:
        async with gate.sweep():
            log.append(f"sweep with {gate.batches} batches inside")

    async def batch(name: str) -> None:
        await gate.enter_batch()
        log.append(f"{name} in")

    async def run() -> None:
        await batch("first")
        await batch("second")  # batches share the gate
        sweeper = asyncio.create_task(sweep())
        await until(lambda: gate.waiting == 1)
        third = asyncio.create_task(batch("third"))
        await until(lambda: gate.waiting == 2)
        gate.leave_batch()
        log.append("one left")
        gate.leave_batch()
        await sweeper
        await third

    asyncio.run(run())
    assert log == ["first in", "second in", "one left", "sweep with 0 batches inside", "third in"]


def test_a_cancelled_sweep_lets_batches_in() -> None:
    gate = Gate()

    async def run() -> None:
        await gate.enter_batch()

        async def sweep() -> None:
            async with gate.sweep():
                raise AssertionError("a cancelled sweep must not run")

        sweeper = asyncio.create_task(sweep())
        await until(lambda: gate.waiting == 1)
        second = asyncio.create_task(gate.enter_batch())
        await until(lambda: gate.waiting == 2)
        sweeper.cancel()
        await second  # let in: nothing waits to sweep any more
        assert (gate.batches, gate.sweeps) == (2, 0)

    asyncio.run(run())


def test_leaving_more_batches_than_entered_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without enter_batch"):
        Gate().leave_batch()

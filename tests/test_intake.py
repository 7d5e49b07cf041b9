"""stream_app.faustx.intake.BatchInput on faust's real consumer (built by the app, not
started: the fetches are handed in as aiokafka returns them): a fetch goes into the inbox
whole, with faust's read-offset rules; acks are faust's bookkeeping, so a commit covers
acked offsets only; a full inbox holds the fetcher back; a revoke drops what was not taken
and the fetch that waited for room, acking nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.app import create_app
from stream_app.faustx.intake import BatchInput
from stream_app.messages import Record
from stream_app.settings import Settings

TOPIC, OTHER = "intake-in", "intake-by-customer"


def fetched(topic: str, partition: int, first: int, n: int) -> list[ConsumerRecord[Any, Any]]:
    return [
        ConsumerRecord(
            topic, partition, o, 1_700_000_000_000 + o, 0, b"k%d" % o, b"v%d" % o, None, 2, 2, []
        )
        for o in range(first, first + n)
    ]


def tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


@asynccontextmanager
async def intake(tmp: Path, max_batch: int = 100, window: float = 0.0) -> AsyncIterator[Any]:
    """A BatchInput on the consumer faust builds for the worker's app (never started)."""
    app = create_app(Settings(data_dir=str(tmp), web_enabled=False))
    channel = app.topic(TOPIC, OTHER, key_type=bytes, value_type=bytes)
    batch_input = BatchInput.register(app, channel, max_batch, window)
    consumer = app.consumer  # faust builds it: the intake attaches itself
    await app.topics._update_indices()  # what the conductor does when it subscribes
    assert consumer._drain_messages == batch_input._drain
    try:
        yield batch_input, consumer, app
    finally:
        consumer._thread.thread_loop.close()  # built with the consumer, never run


def acked_up_to(consumer: Any, topic: str, partition: int) -> int | None:
    """The offset faust would commit now for the partition."""
    from faust.types import TP

    return consumer._new_offset(TP(topic, partition))  # type: ignore[no-any-return]


def offsets(batch: Sequence[Record]) -> list[tuple[str, int, int]]:
    return [(r.topic, r.partition, r.offset) for r in batch]


def test_a_fetch_becomes_records_in_one_piece(tmp_path: Path) -> None:
    async def main() -> list[Record]:
        async with intake(tmp_path) as (batch_input, consumer, _):
            fetch = {tp(TOPIC, 0): fetched(TOPIC, 0, 0, 3), tp(OTHER, 1): fetched(OTHER, 1, 7, 2)}
            await batch_input._deliver(consumer, fetch, None)
            assert consumer._read_offset[tp(TOPIC, 0)] == 2
            assert consumer._read_offset[tp(OTHER, 1)] == 8
            return await batch_input.inbox.get()

    batch = asyncio.run(main())
    assert offsets(batch) == [
        (TOPIC, 0, 0),
        (TOPIC, 0, 1),
        (TOPIC, 0, 2),
        (OTHER, 1, 7),
        (OTHER, 1, 8),
    ]
    first = batch[0]
    assert (first.key, first.value, first.headers) == (b"k0", b"v0", ())
    assert first.timestamp == 1_700_000_000.0  # seconds, as faust's messages gave it


def test_acks_commit_only_offsets_below_which_everything_was_acked(tmp_path: Path) -> None:
    async def main() -> tuple[int | None, int | None, int | None]:
        async with intake(tmp_path, max_batch=5) as (batch_input, consumer, _):
            fetch = {tp(TOPIC, 0): fetched(TOPIC, 0, 0, 10), tp(TOPIC, 1): fetched(TOPIC, 1, 0, 2)}
            await batch_input._deliver(consumer, fetch, None)
            first, second = await batch_input.inbox.get(), await batch_input.inbox.get()
            nothing_yet = acked_up_to(consumer, TOPIC, 0)
            assert batch_input.ack(first) == 5
            after_first = acked_up_to(consumer, TOPIC, 0)  # 5-9 are not done yet
            assert offsets(second) == [(TOPIC, 0, o) for o in range(5, 10)]
            batch_input.ack(second)
            assert acked_up_to(consumer, TOPIC, 1) is None  # its batch is not acked
            return nothing_yet, after_first, acked_up_to(consumer, TOPIC, 0)

    assert asyncio.run(main()) == (None, 5, 10)


def test_records_read_already_are_skipped_and_a_gap_counts_as_acked(tmp_path: Path) -> None:
    async def main() -> tuple[list[tuple[str, int, int]], int | None]:
        async with intake(tmp_path) as (batch_input, consumer, _):
            consumer._read_offset[tp(TOPIC, 0)] = 4  # as after a seek to committed 4
            await batch_input._deliver(consumer, {tp(TOPIC, 0): fetched(TOPIC, 0, 2, 4)}, None)
            # offsets 6-8 are not on the log (a compacted or transactional topic)
            await batch_input._deliver(consumer, {tp(TOPIC, 0): fetched(TOPIC, 0, 9, 1)}, None)
            batch = await batch_input.inbox.get()
            batch_input.ack(batch)
            return offsets(batch), acked_up_to(consumer, TOPIC, 0)

    batch, committable = asyncio.run(main())
    assert batch == [(TOPIC, 0, 4), (TOPIC, 0, 5), (TOPIC, 0, 9)]
    assert committable == 10  # the gap does not hold the commit back


def test_partitions_no_longer_active_are_not_delivered(tmp_path: Path) -> None:
    async def main() -> list[tuple[str, int, int]]:
        async with intake(tmp_path) as (batch_input, consumer, _):
            fetch = {tp(TOPIC, 0): fetched(TOPIC, 0, 0, 1), tp(TOPIC, 1): fetched(TOPIC, 1, 0, 1)}
            await batch_input._deliver(consumer, fetch, {tp(TOPIC, 1)})
            return offsets(await batch_input.inbox.get())

    assert asyncio.run(main()) == [(TOPIC, 1, 0)]


def test_a_full_inbox_holds_the_fetcher_back(tmp_path: Path) -> None:
    async def main() -> tuple[bool, int, int | None, list[tuple[str, int, int]]]:
        async with intake(tmp_path, max_batch=2) as (batch_input, consumer, _):
            await batch_input._deliver(consumer, {tp(TOPIC, 0): fetched(TOPIC, 0, 0, 2)}, None)
            second = asyncio.ensure_future(
                batch_input._deliver(consumer, {tp(TOPIC, 0): fetched(TOPIC, 0, 2, 2)}, None)
            )
            await asyncio.sleep(0.05)
            held = not second.done()
            size = len(batch_input.inbox)
            read = consumer._read_offset[tp(TOPIC, 0)]  # not past what is in the inbox
            first = await batch_input.inbox.get()  # room again: the fetcher goes on
            await asyncio.wait_for(second, 5)
            assert consumer._read_offset[tp(TOPIC, 0)] == 3
            return held, size, read, offsets(first + await batch_input.inbox.get())

    held, size, read, got = asyncio.run(main())
    assert held and size == 2 and read == 1
    assert got == [(TOPIC, 0, o) for o in range(4)]


def test_a_revoke_with_a_full_inbox_drops_what_was_not_taken_and_acks_nothing(
    tmp_path: Path,
) -> None:
    async def main() -> tuple[int, int | None, bool, int | None]:
        async with intake(tmp_path, max_batch=2) as (batch_input, consumer, app):
            await batch_input._deliver(consumer, {tp(TOPIC, 0): fetched(TOPIC, 0, 0, 2)}, None)
            waiting = asyncio.ensure_future(
                batch_input._deliver(consumer, {tp(TOPIC, 0): fetched(TOPIC, 0, 2, 2)}, None)
            )
            await asyncio.sleep(0.05)
            assert not waiting.done()
            # what faust's App._on_partitions_revoked does, in this order
            consumer.stop_flow()
            app.flow_control.suspend()
            app.flow_control.clear()
            await asyncio.wait_for(waiting, 5)
            read = consumer._read_offset[tp(TOPIC, 0)]
            # a fetch that comes back while the flow is stopped is dropped too
            await batch_input._deliver(consumer, {tp(TOPIC, 0): fetched(TOPIC, 0, 4, 1)}, None)
            return (
                len(batch_input.inbox),
                read,
                bool(consumer._acked),
                acked_up_to(consumer, TOPIC, 0),
            )

    size, read, acked, committable = asyncio.run(main())
    assert size == 0  # dropped: faust seeks back to the committed offset before fetching again
    assert read == 1  # the dropped fetch did not move the read offset on
    assert not acked and committable is None  # nothing acked that was not scored


def test_a_fetch_of_an_older_generation_is_dropped(tmp_path: Path) -> None:
    async def main() -> int:
        async with intake(tmp_path) as (batch_input, consumer, app):
            fetch = {tp(TOPIC, 0): fetched(TOPIC, 0, 0, 2)}
            generation = app.consumer_generation_id
            app.consumer_generation_id = generation + 1  # a rebalance finished meanwhile
            assert not await batch_input._put(consumer, fetched_records(fetch), generation)
            return len(batch_input.inbox)

    assert asyncio.run(main()) == 0


def fetched_records(fetch: dict[TopicPartition, list[Any]]) -> list[Record]:
    return [
        Record(r.topic, r.partition, r.offset, r.key, r.value) for rs in fetch.values() for r in rs
    ]


def test_a_batch_is_acked_only_after_the_handler_returns(tmp_path: Path) -> None:
    async def main() -> tuple[int, int | None, int | None]:
        async with intake(tmp_path) as (batch_input, consumer, _):
            release = asyncio.Event()
            handled: list[int] = []

            async def handle(records: Sequence[Record]) -> None:
                handled.append(len(records))
                await release.wait()  # "until durable"

            runner = asyncio.ensure_future(batch_input.run(handle))
            await batch_input._deliver(consumer, {tp(TOPIC, 0): fetched(TOPIC, 0, 0, 3)}, None)
            while not handled:
                await asyncio.sleep(0.001)
            in_flight = len(consumer._unacked_messages)  # faust's wait_empty waits for it
            before = acked_up_to(consumer, TOPIC, 0)
            release.set()
            while consumer._unacked_messages:
                await asyncio.sleep(0.001)
            after = acked_up_to(consumer, TOPIC, 0)
            runner.cancel()
            with suppress(asyncio.CancelledError):
                await runner
            return in_flight, before, after

    assert asyncio.run(main()) == (1, None, 3)


def test_a_topic_not_of_the_intake_goes_through_faust_s_own_delivery(tmp_path: Path) -> None:
    async def main() -> tuple[list[bytes], int]:
        async with intake(tmp_path) as (batch_input, consumer, app):
            from faust.types import TP

            channel = app.topic("elsewhere", key_type=bytes, value_type=bytes)
            app.topics.add(channel)
            await app.topics._update_indices()
            await app.topics.on_partitions_assigned({TP("elsewhere", 0), TP(TOPIC, 0)})
            app.flow_control.resume()  # as faust does once the partitions are ready
            fetch = {tp("elsewhere", 0): fetched("elsewhere", 0, 0, 2)}
            await batch_input._deliver(consumer, fetch, None)
            queue = channel.queue
            values = [queue.get_nowait().value for _ in range(queue.qsize())]
            return values, len(batch_input.inbox)

    values, in_inbox = asyncio.run(main())
    assert values == [b"v0", b"v1"]  # as faust events, to the channel that subscribed
    assert in_inbox == 0

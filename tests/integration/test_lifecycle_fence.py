"""Erase and merge on the fence the batch writes use (``"<version>.<write id>"``), and on
records that cannot be read, over a real Redis (the topics in memory:
:mod:`tests.integration.lifecycle_bus`)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.asyncio import Redis

from scoring import Event, apply, encode_state
from stream_app.devkit.stack import LocalService
from stream_app.messages import expected_partition
from stream_app.store.keys import digest, slot_of
from stream_app.store.records import Write, decode_record
from stream_app.store.state import StateStore
from tests.integration.lifecycle_bus import MODEL, SECRET, Deployment, event, request
from tests.integration.test_lifecycle import history, run, trace_of

DAY = 86_400_000
GARBAGE = b"\x00\xffnot a record"


async def dead_letters(d: Deployment) -> list[dict[str, Any]]:
    return [orjson.loads(r.value or b"{}") for r in d.bus.out(d.topics.dlq)]


async def stored(client: Redis, key: str) -> bytes:
    raw = await client.get(key)
    assert isinstance(raw, bytes)
    return raw


def test_erase_is_fenced_by_the_write_token(redis_server: LocalService) -> None:
    """A record written by a batch carries a write id; an erase naming the same version
    with another write id (a record lost in a failover, its version handed out again)
    deletes nothing; the erase request, which reads the record's token, deletes it."""

    async def test(d: Deployment) -> None:
        now = int(time.time() * 1000)
        cid = "fenced-c1"
        await d.bus.produce(history(cid, now - DAY, "f"))
        await d.drain()
        record = decode_record(await stored(d.client, d.keys.state(cid)))
        assert "." in record.token and record.fence == record.token
        stale = f"{record.version}.someone-else"
        kwargs = {"tier": "", "partition": 0, "suppress_ms": DAY, "now_ms": now}
        assert await d.lifecycle_store.erase(cid, fence=stale, **kwargs) is None
        assert await d.state(cid) is not None  # (the stale fence deleted nothing)

        await d.bus.produce([request("erase", cid, "req-fenced")])
        stats = await d.drain()
        assert stats.lifecycle["erase"] == 1 and stats.conflicts == 0
        assert await trace_of(d, cid) == []
        assert await d.tier_counts() == await d.tier_recount()

    run(redis_server, test)


def test_erase_deletes_records_that_cannot_be_read(redis_server: LocalService) -> None:
    """A record that does not decode, and a state key of another Redis type, are erased
    all the same (their events were dead-lettered, not scored): no trace, suppressed."""

    async def test(d: Deployment) -> None:
        corrupt, wrong_type = "corrupt-c1", "wrongtype-c2"
        await d.client.set(d.keys.state(corrupt), GARBAGE + corrupt.encode())
        await d.client.hset(d.keys.state(wrong_type), "x", wrong_type)
        await d.bus.produce([request("erase", corrupt, "req-c"), request("erase", wrong_type,
                                                                         "req-w")])  # fmt: skip
        stats = await d.drain()
        assert stats.lifecycle["erase"] == 2 and stats.conflicts == 0
        for cid in (corrupt, wrong_type):
            assert await trace_of(d, cid) == []
            assert await d.suppressed_until(cid)

    run(redis_server, test)


def test_merges_leave_records_that_cannot_be_read_as_they_are(
    redis_server: LocalService,
) -> None:
    """Merging away a customer whose record does not decode is refused (nothing to hand
    over); a hand-over to a survivor whose record does not decode is dead-lettered with
    ``corrupt_state``, like the survivor's own events; both records stay as they were."""

    async def test(d: Deployment) -> None:
        now = int(time.time() * 1000)
        broken_source, survivor, source = "broken-src", "broken-into", "good-src"
        await d.client.set(d.keys.state(broken_source), GARBAGE)
        await d.client.set(d.keys.state(survivor), GARBAGE)
        await d.bus.produce(history(source, now - DAY, "s"))
        await d.drain()
        await d.bus.produce([request("merge", broken_source, "req-b", into=source),
                             request("merge", source, "req-s", into=survivor)])  # fmt: skip
        stats = await d.drain()
        assert stats.lifecycle["merge_refused:corrupt_state"] == 1
        assert stats.lifecycle["merge"] == 1 and stats.dead == {"corrupt_state": 1}
        assert await stored(d.client, d.keys.state(broken_source)) == GARBAGE
        assert await stored(d.client, d.keys.state(survivor)) == GARBAGE
        assert await d.client.get(d.keys.alias(broken_source)) is None
        [letter] = await dead_letters(d)
        assert letter["reason"] == "corrupt_state"
        source_of = letter["source"]
        assert (source_of["topic"], source_of["partition"]) == (
            d.topics.by_customer,
            expected_partition(survivor, d.topics.input_partitions),
        )  # (the hand-over)

        await d.bus.produce([event("late-1", survivor, "webinar_attended", now)])
        stats = await d.drain()
        assert stats.dead == {"corrupt_state": 1}  # (the survivor's own events: the same)

    run(redis_server, test)


async def frozen_writer_cannot_recreate(d: Deployment) -> None:
    """A worker reads a new customer (no record: fence "0") and freezes; the customer is
    erased elsewhere; the worker wakes and writes with the fence it read. The key still
    does not exist, so the fence alone would let the write through: the script refuses it
    because the customer is on its slot's suppression list, and the worker, reading again,
    drops the customer's events as suppressed."""
    now = int(time.time() * 1000)
    gone, other = "frozen-gone", "frozen-control"
    read = await d.store.load([gone, other])  # the frozen worker's read
    assert {cid: r.fence for cid, r in read.items()} == {gone: "0", other: "0"}

    await d.bus.produce([request("erase", gone, "req-frozen")])  # the erase runs elsewhere
    assert (await d.drain()).lifecycle["erase"] == 1
    assert await d.suppressed_until(gone) is not None

    def write(cid: str) -> Write:
        state = apply(None, Event(f"{cid}-e", cid, "webinar_attended", now), MODEL).state
        r = read[cid]
        return Write(cid, r.version, r.marks, encode_state(state), read_token=r.fence,
                     tier_move=("", state.tier_name(MODEL)))  # fmt: skip

    lost = await d.store.commit([write(gone), write(other)])  # the worker wakes up
    assert lost == [gone]  # refused: counted as lost, so the worker reads again
    assert await d.state(gone) is None and await d.state(other) is not None
    assert await trace_of(d, gone) == []
    assert await d.tier_counts() == await d.tier_recount()

    await d.bus.produce([event("frozen-late", gone, "webinar_attended", now)])
    stats = await d.drain()  # (what the worker does once it has read again)
    assert stats.suppressed == 1 and await d.state(gone) is None

    # Once the suppression has ended (3 days here), the customer may come back.
    later = StateStore(d.client, d.keys, secret=SECRET, clock=lambda: now / 1000 + 4 * 86_400)
    assert await later.commit([write(gone)]) == []
    assert await d.state(gone) is not None


def test_a_frozen_writer_cannot_recreate_an_erased_customer(redis_server: LocalService) -> None:
    run(redis_server, frozen_writer_cannot_recreate)


async def suppression_list_prunes_and_reads_the_old_layout(d: Deployment) -> None:
    """Entries that ended are pruned from their slot's hash by the next suppression there;
    an earlier release's ``suppressed:{<digest>}`` key still suppresses its customer."""
    now = time.time()
    store = d.lifecycle_store
    first, second = two_in_one_slot(d, "prune")
    store.clock = lambda: now
    await store.suppress(first, suppress_ms=1_000)
    assert await store.is_suppressed(first)
    store.clock = lambda: now + 2.0  # first's suppression has ended ...
    assert not await store.is_suppressed(first)
    await store.suppress(second, suppress_ms=DAY)  # ... and goes with the next one
    hashes = await d.client.hgetall(d.keys.suppression(first))
    assert list(hashes) == [digest(SECRET, second).encode()]
    assert 0 < await d.client.pttl(d.keys.suppression(first)) <= DAY

    old = "suppressed-by-an-earlier-release"
    await d.client.set(d.keys.suppressed(digest(SECRET, old)), "1", px=DAY)
    await d.bus.produce([event("old-1", old, "webinar_attended", int(now * 1000))])
    assert (await d.drain()).suppressed == 1 and await d.state(old) is None


def two_in_one_slot(d: Deployment, prefix: str) -> tuple[str, str]:
    """Two customer ids whose keys share a Redis Cluster slot."""
    seen: dict[int, str] = {}
    k = 0
    while True:
        cid = f"{prefix}-{k}"
        slot = slot_of(d.keys.state(cid))
        if slot in seen:
            return seen[slot], cid
        seen[slot] = cid
        k += 1


def test_the_suppression_list_prunes_and_reads_the_old_layout(redis_server: LocalService) -> None:
    run(redis_server, suppression_list_prunes_and_reads_the_old_layout)

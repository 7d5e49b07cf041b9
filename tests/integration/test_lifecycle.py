"""Erase and merge through the worker's own code over a real Redis (the topics in memory:
:mod:`tests.integration.lifecycle_bus`; the same flows against Tansu and worker processes
are in ``test_lifecycle_workers.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

from scoring import values_at
from scoring.merge import departure
from stream_app.devkit.stack import LocalService
from stream_app.messages import OutMessage, expected_partition
from stream_app.store.keys import slot_of
from tests.integration.lifecycle_bus import (
    MODEL,
    Deployment,
    event,
    request,
    two_on_different_partitions,
)
from tests.integration.workers import unique

T = TypeVar("T")
DAY = 86_400_000


def run(redis_server: LocalService, test: Callable[[Deployment], Coroutine[Any, Any, T]]) -> T:
    async def main() -> T:
        client = aioredis.from_url(redis_server.url)
        try:
            return await test(Deployment(client, unique("lc")))
        finally:
            await client.aclose()

    return asyncio.run(main())


def history(cid: str, start: int, tag: str) -> list[dict[str, Any]]:
    """Enough to be warm, in segments, with an NPS answer and a due crossing."""
    kinds = ["webinar_attended", "review_submitted", "webinar_attended", "email_click"]
    docs = [event(f"{tag}-{n}", cid, k, start + n * 60_000) for n, k in enumerate(kinds)]
    docs.append(event(f"{tag}-nps", cid, "nps_response", start + 300_000, score=10))
    return docs


async def trace_of(d: Deployment, cid: str) -> list[str]:
    """Every key whose name or content holds ``cid``."""
    needle = cid.encode()
    return [
        f"{key!r}: {values!r:.200}"
        for key, values in await d.dump()
        if needle in key or any(needle in v for v in values)
    ]


async def erase_leaves_no_trace(d: Deployment) -> None:
    now = int(time.time() * 1000)
    gone, kept, merged_in = "erase-me-7f3a", "kept-c1", "alias-of-erased"
    await d.bus.produce([*history(gone, now - 3 * DAY, "g"), *history(kept, now - DAY, "k")])
    await d.bus.produce(history(merged_in, now - 2 * DAY, "m"))
    await d.drain()
    await d.bus.produce([request("merge", merged_in, "req-m", into=gone)])
    await d.drain()
    state = await d.state(gone)
    assert state is not None and state.tier_name(MODEL) != "cold" and state.segments
    assert await d.client.zscore(d.keys.due(expected_partition(gone, 4)), gone) is not None
    assert await trace_of(d, gone)  # (the scan sees it while it is there)

    await d.bus.produce([request("erase", gone, "req-e")])
    stats = await d.drain()
    assert stats.lifecycle["erase"] == 1
    assert await trace_of(d, gone) == []
    assert await trace_of(d, merged_in) == []  # merged into it: erased with it
    ends = await d.suppressed_until(gone)
    assert ends is not None and now < ends <= time.time() * 1000 + 3 * DAY
    assert 0 < await d.client.pttl(d.keys.suppression(gone)) <= 3 * DAY
    for rule in MODEL.segments:
        assert await d.client.zscore(d.keys.segment_members(rule.name), gone) is None
    assert await d.tier_counts() == await d.tier_recount()
    assert await d.state(kept) is not None
    erased = [e for e in d.bus.cloudevents() if e["type"] == "engagement.customer.erased"]
    assert [(e["subject"], sorted(e["data"])) for e in erased] == [
        (gone, ["customer_id", "model", "model_version", "occurred_at_ms", "request_id"])
    ]

    await d.bus.produce([event("late-1", gone, "webinar_attended", now),
                         event("late-2", merged_in, "webinar_attended", now)])  # fmt: skip
    before_dlq = len(d.bus.out(d.topics.dlq))
    stats = await d.drain()
    assert stats.suppressed == 2 and stats.applied == 0
    assert len(d.bus.out(d.topics.dlq)) == before_dlq  # never dead-lettered
    assert await trace_of(d, gone) == [] and await d.state(merged_in) is None

    await d.bus.produce([request("erase", gone, "req-e")])  # a redelivery: the same again
    await d.drain()
    erased = [e for e in d.bus.cloudevents() if e["type"] == "engagement.customer.erased"]
    assert len({e["id"] for e in erased}) == 1 and len(erased) == 2
    assert await d.tier_counts() == await d.tier_recount()


def test_erase_leaves_no_trace_and_suppresses_later_events(redis_server: LocalService) -> None:
    run(redis_server, erase_leaves_no_trace)


def sum_at(a: Any, b: Any, t: float) -> dict[str, float]:
    va, vb = values_at(a, MODEL, t), values_at(b, MODEL, t)
    return {k: va.dimensions[k] + vb.dimensions[k] for k in MODEL.dimensions}


async def merge_across_partitions(d: Deployment) -> None:
    now = int(time.time() * 1000)
    src, into = two_on_different_partitions("m")
    assert slot_of(d.keys.state(src)) != slot_of(d.keys.state(into))  # (cross-slot too)
    await d.bus.produce([*history(src, now - 4 * DAY, "s"), *history(into, now - DAY, "i")])
    await d.drain()
    a, b = await d.state(src), await d.state(into)
    assert a is not None and b is not None
    await d.bus.produce([request("merge", src, "req-1", into=into)])
    stats = await d.drain()
    assert stats.lifecycle["merge"] == 1 and stats.lifecycle["merge_in"] == 1
    merged = await d.state(into)
    assert merged is not None and await d.state(src) is None
    clock = max(a.clock_ms, b.clock_ms)
    got, want = values_at(merged, MODEL, clock).dimensions, sum_at(a, b, clock)
    assert all(math.isclose(got[k], want[k], rel_tol=1e-9) for k in want)
    assert merged.events_applied == a.events_applied + b.events_applied
    assert await d.client.get(d.keys.alias(src)) == into.encode()
    assert await d.client.zscore(d.keys.due(expected_partition(src, 4)), src) is None
    assert await d.tier_counts() == await d.tier_recount()
    docs = d.bus.cloudevents()
    merges = [e for e in docs if e["data"].get("cause") == "merge"]
    assert merges and all(e["data"]["cause_event_id"] == "req-1" for e in merges)
    assert any(e["subject"] == into for e in merges)
    # src leaves its tier, then each segment it was in, under its own id, at its clock
    left = [e["data"] for e in merges if e["subject"] == src]
    assert [(x["kind"], x["segment"], x["from"], x["to"]) for x in left] == [
        ("tier", a.tier_name(MODEL), a.tier_name(MODEL), None),
        *(("segment", name, None, None) for name in a.segment_names(MODEL)),
    ]
    assert len(left) > 1 and {x["occurred_at_ms"] for x in left} == {a.clock_ms}
    assert all(math.isclose(x["score"], math.fsum(a.values)) for x in left)
    assert [e["type"] for e in merges if e["subject"] == src][1:] == [
        "engagement.segment.exited"
    ] * (len(left) - 1)
    assert [e["data"]["into"] for e in docs if e["type"] == "engagement.customer.merged"] == [into]

    # the request again changes nothing; a copy of the hand-over neither
    await d.bus.produce([request("merge", src, "req-1", into=into)])
    replay = [r for r in d.bus.out(d.topics.by_customer) if r.key == into.encode()]
    await d.bus.publish([OutMessage(r.topic, r.key, r.value or b"", r.headers) for r in replay])
    stats = await d.drain()
    assert stats.lifecycle["merge_skipped:alias"] == 1
    assert stats.redelivered == len(replay) == 1 and await d.state(into) == merged
    assert d.bus.cloudevents() == docs  # (nothing published again)

    await d.bus.produce([event("after", src, "webinar_attended", now)])
    stats = await d.drain()
    assert stats.aliased == 1
    later = await d.state(into)
    assert later is not None and later.events_applied == merged.events_applied + 1
    assert await d.state(src) is None


def test_merge_across_partitions_is_exact_and_routes_later_events(
    redis_server: LocalService,
) -> None:
    run(redis_server, merge_across_partitions)


async def alias_chain_and_cycles(d: Deployment) -> None:
    now = int(time.time() * 1000)
    a, b, c = two_on_different_partitions("chain", n=3)
    assert len({slot_of(d.keys.state(x)) for x in (a, b, c)}) == 3
    await d.bus.produce([*history(a, now - DAY, "a"), *history(b, now - DAY, "b"),
                         *history(c, now - DAY, "c")])  # fmt: skip
    await d.drain()
    before = [await d.state(x) for x in (a, b, c)]
    total = sum(s.events_applied for s in before if s is not None)
    await d.bus.produce([request("merge", a, "r-ab", into=b)])
    await d.drain()
    assert before[0] is not None  # a's tier exit is a move out of its tier (the last 2 days)
    exit_a = departure(before[0], MODEL, customer_id=a, request_id="r-ab")[0]
    assert exit_a.from_tier is not None and exit_a.to_tier is None
    assert await d.client.zscore(d.keys.tier_moves(exit_a.from_tier, "out"), exit_a.change_id)
    await d.bus.produce([request("merge", b, "r-bc", into=c)])
    await d.drain()
    merged = await d.state(c)  # the sum of all three at its clock
    assert merged is not None and all(before)
    got = values_at(merged, MODEL, merged.clock_ms).dimensions
    for k in MODEL.dimensions:
        want = math.fsum(values_at(s, MODEL, merged.clock_ms).dimensions[k] for s in before if s)
        assert math.isclose(got[k], want, rel_tol=1e-9), (k, got[k], want)
    assert await d.tier_counts() == await d.tier_recount()
    await d.bus.produce([event("late-a", a, "webinar_attended", now)])
    stats = await d.drain()
    assert stats.aliased == 2  # a -> b -> c
    final = await d.state(c)
    assert final is not None and final.events_applied == total + 1
    assert await d.state(a) is None and await d.state(b) is None
    await d.bus.produce([request("merge", c, "r-ca", into=a)])  # a leads back to c
    stats = await d.drain()
    assert stats.lifecycle["merge_refused:cycle"] == 1 and await d.state(c) == final
    assert await d.tier_counts() == await d.tier_recount()


def test_merges_follow_the_alias_chain_and_refuse_cycles(redis_server: LocalService) -> None:
    run(redis_server, alias_chain_and_cycles)


def test_a_merge_redelivered_after_a_crash_is_applied_once(redis_server: LocalService) -> None:
    """Crash the source side after it published the hand-over and before it retired the
    customer: the restarted worker publishes it again; the survivor applies it once."""

    async def test(d: Deployment) -> None:
        now = int(time.time() * 1000)
        src, into = two_on_different_partitions("crash")
        await d.bus.produce([*history(src, now - DAY, "s"), *history(into, now - DAY, "i")])
        await d.drain()
        a, b = await d.state(src), await d.state(into)
        await d.bus.produce([request("merge", src, "req-x", into=into)])
        calls = 0
        retire = d.lifecycle_store.retire

        async def crash_once(*args: Any, **kwargs: Any) -> bool:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ConnectionError("killed before the retire")
            return await retire(*args, **kwargs)

        d.lifecycle_store.retire = crash_once  # type: ignore[method-assign]
        pending = d.bus.pending()
        with contextlib.suppress(ConnectionError):  # not acked: it comes again, to a new worker
            await d.scorer.process(pending)
        d.scorer = d.new_scorer()
        await d.drain()
        handovers = [r for r in d.bus.out(d.topics.by_customer) if r.key == into.encode()]
        assert len(handovers) == 2  # sent twice ...
        merged = await d.state(into)
        assert a is not None and b is not None and merged is not None
        assert merged.events_applied == a.events_applied + b.events_applied  # ... applied once
        docs = [e for e in d.bus.cloudevents() if e["data"].get("cause") == "merge"]
        contents: dict[str, list[bytes]] = {}
        for e in docs:
            contents.setdefault(e["id"], []).append(orjson.dumps(e))
        assert all(len(set(c)) == 1 for c in contents.values())  # one content per id
        survivor = [e["id"] for e in docs if e["subject"] == into]
        assert survivor and len(set(survivor)) == len(survivor)  # applied once
        exits = [e["id"] for e in docs if e["subject"] == src]  # published before the crash
        assert len(exits) == 2 * len(set(exits)) > 2  # and again, identical

    run(redis_server, test)

"""The worker end to end over the session's Tansu and redis-server.

Two workers serve the whole module (started together, stopped together): ``nocaps`` runs the
default model without daily caps (where keyed and unkeyed input must give the same state) and
``default`` runs the shipped model. Tests keep apart by customer ids (and, for NPS, by days).
Expected results come from the pure core: the same events folded through ``scoring.apply``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from scoring import REASONS, InvalidEvent, load_default_model, nps, parse_event
from stream_app.contracts import rfc3339
from stream_app.devkit import simulator
from stream_app.devkit.stack import LocalService
from stream_app.messages import expected_partition
from stream_app.store.state import StateStore, connect
from tests.integration.workers import (
    DAY_MS,
    OLD_MS,
    SCHEMAS,
    Message,
    Out,
    Sent,
    Worker,
    capless_model_file,
    close,
    dumps,
    event,
    fold,
    in_offset_order,
    now_ms,
    relaunch,
    settle,
    start_worker,
    state_differences,
    stop_all,
    unique,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workers(
    tansu: LocalService, redis_server: LocalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Worker]]:
    workdir = tmp_path_factory.mktemp("pipeline")
    started: list[Worker] = []
    try:
        nocaps = capless_model_file(workdir)
        started.append(
            start_worker(tansu, redis_server, workdir / "nocaps", name="nocaps", model_file=nocaps)
        )
        # an age limit that still takes the probes at 2000-01-01 (and not 1970)
        max_age_days = str((now_ms() - OLD_MS) // DAY_MS + 365)
        started.append(
            start_worker(
                tansu,
                redis_server,
                workdir / "default",
                name="default",
                ENGAGEMENT_MAX_EVENT_AGE_DAYS=max_age_days,
            )
        )
        for w in started:
            w.wait_ready(at_ms=OLD_MS)  # the tests replay history into these workers
        yield {w.name: w for w in started}
    finally:
        unclean = stop_all(started)
    assert not unclean, "\n".join(unclean)  # SIGTERM stops a worker, even mid-batch


@pytest.fixture(scope="module")
def dead_letter_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "dead-letter.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="module")
def change_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "segment-change.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def renamed(docs: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The same events for customers named ``prefix + customer_id``."""
    return [{**d, "customer_id": prefix + d["customer_id"]} for d in docs]


def last_sent(docs: list[dict[str, Any]], sent: list[Sent]) -> dict[str, Sent]:
    """Each customer's highest input offset (keyed input: one partition per customer)."""
    last: dict[str, Sent] = {}
    for doc, s in zip(docs, sent, strict=True):
        cid = doc["customer_id"]
        assert cid not in last or last[cid].partition == s.partition
        if cid not in last or s.offset > last[cid].offset:
            last[cid] = s
    return last


# --------------------------------------------------------------------------- 1


def test_keyed_and_unkeyed_input_give_the_same_state(workers: dict[str, Worker]) -> None:
    w = workers["nocaps"]
    config = simulator.SimConfig.ending(now_ms(), 40, customers=50, seed=3)
    history = list(simulator.history(config))
    tag = unique("ku")
    keyed, unkeyed = renamed(history, f"{tag}-k-"), renamed(history, f"{tag}-u-")
    sent_k = w.produce_events(keyed, keyed=True)
    sent_u = w.produce_events(unkeyed, keyed=False)  # round-robin over the 4 partitions
    assert {s.partition for s in sent_u} == set(range(4))

    expected = fold((dumps(d) for d in history), w.model)
    counts = Counter(d["customer_id"] for d in history)
    assert set(expected) == set(counts) and len(expected) >= 40

    w.wait_processed(last_sent(keyed, sent_k))

    def unkeyed_done() -> list[str]:
        states = w.states(f"{tag}-u-{cid}" for cid in counts)
        return [
            cid
            for cid, n in counts.items()
            if (s := states[f"{tag}-u-{cid}"]) is None or s.events_applied < n
        ]

    w.wait(lambda: not unkeyed_done(), what=f"unkeyed input scored: {unkeyed_done()[:5]}")

    # the unkeyed messages on a partition other than their customer's went through the
    # by-customer topic; the others were scored where they arrived
    forwarded = {
        dumps(d)
        for d, s in zip(unkeyed, sent_u, strict=True)
        if s.partition != expected_partition(d["customer_id"], 4)
    }
    assert forwarded and len(forwarded) < len(unkeyed)

    def repartitioned(messages: list[Message]) -> set[bytes]:
        return {m.value for m in messages if m.key and m.key.startswith(f"{tag}-u-".encode())}

    seen = w.read(
        w.settings.by_customer_topic,
        lambda ms: repartitioned(ms) >= forwarded,
        what="the forwarded messages in the by-customer topic",
    )
    assert repartitioned(seen) == forwarded

    k_states = w.states(f"{tag}-k-{cid}" for cid in counts)
    u_states = w.states(f"{tag}-u-{cid}" for cid in counts)
    horizon = max([now_ms(), *(s.clock_ms for s in [*k_states.values(), *u_states.values()] if s)])
    problems: dict[str, list[str]] = {}
    exact = 0
    for cid, f in expected.items():
        k_id, u_id = f"{tag}-k-{cid}", f"{tag}-u-{cid}"
        k, u = k_states[k_id], u_states[u_id]
        assert k is not None and u is not None and f.state is not None
        # settled to one horizon: the worker's decay sweep may have fired crossings already
        want = settle(f.state, cid, w.model, horizon)
        k, u = settle(k, k_id, w.model, horizon), settle(u, u_id, w.model, horizon)
        exact += k == want
        for name, diffs in (
            ("keyed", state_differences(k, want, w.model, at_ms=horizon)),
            ("unkeyed", state_differences(u, want, w.model, at_ms=horizon)),
            ("unkeyed vs keyed", state_differences(u, k, w.model, at_ms=horizon)),
        ):
            if diffs:
                problems[f"{name} {cid}"] = diffs
    assert not problems, problems
    # keyed, the worker met each customer's events in the fold's order: mostly the very same
    # state, bit for bit (see state_differences for when the decay sweep makes a difference)
    assert exact >= len(expected) // 2, f"only {exact} of {len(expected)} keyed states bit-exact"


# --------------------------------------------------------------------------- 2


def test_out_of_order_and_duplicate_events(workers: dict[str, Worker]) -> None:
    w = workers["default"]
    config = simulator.SimConfig.ending(now_ms(), 30, customers=30, seed=5)
    tag = unique("dup")
    per_customer: dict[str, list[dict[str, Any]]] = {}
    for doc in renamed(list(simulator.history(config)), f"{tag}-"):
        per_customer.setdefault(doc["customer_id"], []).append(doc)
    streams = [
        simulator.inject_duplicates_and_disorder(
            evs, duplicate_rate=0.15, disorder_rate=0.3, seed=i
        )
        for i, evs in enumerate(per_customer.values())
    ]
    docs = [d for group in itertools.zip_longest(*streams) for d in group if d is not None]
    sent = w.produce_events(docs, keyed=True)
    expected = fold(in_offset_order(docs, sent), w.model)

    statuses = Counter(s for f in expected.values() for s in f.statuses)
    assert statuses["duplicate"] > 10 and statuses["applied"] > 100
    late = 0
    clock: dict[str, int] = {}
    for d in docs:
        cid = d["customer_id"]
        late += d["timestamp"] < clock.get(cid, -1)
        clock[cid] = max(clock.get(cid, -1), d["timestamp"])
    assert late > 10

    w.wait_processed(last_sent(docs, sent))
    states = w.states(expected)
    horizon = max([now_ms(), *(s.clock_ms for s in states.values() if s)])
    problems = {}
    for cid, f in expected.items():
        got = states[cid]
        assert got is not None and f.state is not None
        got, want = settle(got, cid, w.model, horizon), settle(f.state, cid, w.model, horizon)
        diffs = state_differences(got, want, w.model, at_ms=horizon)
        distinct = len({d["event_id"] for d in per_customer[cid]})
        if got.events_applied != distinct:  # duplicates are not counted
            diffs.append(f"events_applied {got.events_applied} != {distinct} distinct events")
        if diffs:
            problems[cid] = diffs
    assert not problems, problems


# --------------------------------------------------------------------------- 3


def bad_messages(tag: str, now: int) -> dict[str, bytes]:
    """One message per dead-letter reason."""

    def doc(**fields: Any) -> dict[str, Any]:
        base = event(unique("bad"), f"{tag}-bad", "web_visit", now - 1000)
        base.update(fields)
        return base

    missing = doc()
    del missing["timestamp"]
    return {
        "not_json": b'\xff{"event_id": "x", not json',
        "not_object": b'["event_id", "customer_id"]',
        "too_large": dumps(doc(properties={"pad": "x" * 70_000})),
        "missing_field": dumps(missing),
        "bad_field": dumps(doc(event_id=42)),
        "unknown_type": dumps(doc(type="teleported")),
        "bad_timestamp": dumps(doc(timestamp="yesterday at noon")),
        "timestamp_in_future": dumps(doc(timestamp=now + DAY_MS)),
        "timestamp_too_old": dumps(doc(timestamp=1_000)),  # 1970: beyond the worker's limit
        "bad_customer_id": dumps(doc(customer_id=f"{tag} with spaces")),
        "bad_nps_score": dumps(doc(type="nps_response", properties={"score": 11})),
    }


def test_every_dead_letter_reason(
    workers: dict[str, Worker], dead_letter_validator: jsonschema.protocols.Validator
) -> None:
    w = workers["default"]
    tag = unique("dlq")
    now = now_ms()
    bad = bad_messages(tag, now)
    assert set(bad) == set(REASONS)
    model = load_default_model()
    for reason, raw in bad.items():  # the core gives each message the reason it stands for
        with pytest.raises(InvalidEvent) as info:
            parse_event(raw, model, now_ms=now, max_age_ms=w.settings.max_event_age_ms)
        assert info.value.reason == reason

    # valid events before, between and after the bad ones, on every partition
    outs: list[Out] = []
    valid: list[dict[str, Any]] = []
    for i, (reason, raw) in enumerate(bad.items()):
        good = event(unique("ok"), f"{tag}-ok-{i}", "email_click", now - 5000 + i)
        valid.append(good)
        outs.append(Out(dumps(good), good["customer_id"].encode()))
        key = f"{tag}-bad".encode() if reason == "bad_nps_score" else None
        outs.append(Out(raw, key, None if key else i % 4))
    last = event(unique("ok"), f"{tag}-ok-last", "email_click", now - 100)
    valid.append(last)
    outs.append(Out(dumps(last), last["customer_id"].encode()))
    sent = w.produce(outs)
    bad_at = {
        (sent[2 * i + 1].partition, sent[2 * i + 1].offset): (reason, outs[2 * i + 1])
        for i, reason in enumerate(bad)
    }
    valid_sent = [s for i, s in enumerate(sent) if i % 2 == 0]

    def ours(messages: list[Any]) -> dict[tuple[int, int], Any]:
        found = {}
        for m in messages:
            src = m.json()["source"]
            if src["topic"] == w.settings.input_topic:
                key = (src["partition"], src["offset"])
                if key in bad_at:
                    found[key] = m
        return found

    letters = ours(
        w.read(w.settings.dlq_topic, lambda ms: len(ours(ms)) == len(bad), what="dead letters")
    )
    for where, m in letters.items():
        reason, out = bad_at[where]
        body = m.json()
        dead_letter_validator.validate(body)
        assert body["reason"] == reason
        assert body["source"] == {
            "topic": w.settings.input_topic,
            "partition": where[0],
            "offset": where[1],
        }
        assert base64.b64decode(body["payload_b64"], validate=True) == out.value
        assert body["detail"]
        assert m.key == out.key
        received = datetime.fromisoformat(body["received_at"]).timestamp() * 1000
        assert now - 60_000 <= received <= now_ms() + 1000

    # the worker kept going: every valid event was scored, nothing of the bad ones was
    w.wait_processed(last_sent(valid, valid_sent))
    states = w.states(d["customer_id"] for d in valid)
    assert all(s is not None and s.events_applied == 1 for s in states.values()), states
    assert w.state(f"{tag}-bad") is None


# --------------------------------------------------------------------------- 4


def test_tier_change_and_segment_entry_are_published_as_cloudevents(
    workers: dict[str, Worker], change_validator: jsonschema.protocols.Validator
) -> None:
    w = workers["default"]
    cid = unique("ce")
    t0 = now_ms() - 60_000
    docs = [
        event(unique("e"), cid, "webinar_attended", t0),
        event(unique("e"), cid, "webinar_attended", t0),  # 20 points: cold -> warm
        event(unique("e"), cid, "nps_response", t0 + 1000, score=10),  # a promoter: advocate
    ]
    expected = fold((dumps(d) for d in docs), w.model)[cid]
    assert [(c.kind, c.name, c.cloudevent_type) for c in expected.changes] == [
        ("tier", "warm", "engagement.tier.changed"),
        ("segment", "advocate", "engagement.segment.entered"),
    ]
    sent = w.produce_events(docs)

    def mine(messages: list[Any]) -> list[Any]:
        return [m for m in messages if m.key == cid.encode()]

    got = mine(
        w.read(w.settings.output_topic, lambda ms: len(mine(ms)) >= 2, what=f"changes of {cid}")
    )
    assert len(got) == 2
    by_id = {c.change_id: c for c in expected.changes}
    for m in got:
        ce = m.json()
        change_validator.validate(ce)
        # the CloudEvents Kafka binding's structured mode: the header names the format
        assert m.headers == (("content-type", b"application/cloudevents+json; charset=UTF-8"),)
        change = by_id[ce["id"]]  # the id the offline fold computes
        assert m.partition == expected_partition(cid, w.settings.partitions)
        assert ce["type"] == change.cloudevent_type
        assert ce["source"] == "urn:engagement-scorer:default"
        assert ce["subject"] == cid
        assert ce["time"] == rfc3339(change.occurred_at_ms)
        data = ce["data"]
        assert data["customer_id"] == cid and data["kind"] == change.kind
        assert data["segment"] == change.name
        assert (data["from"], data["to"]) == (change.from_tier, change.to_tier)
        assert close(data["score"], change.score)
        assert data["dimensions"].keys() == change.dimensions.keys()
        assert all(close(data["dimensions"][k], v) for k, v in change.dimensions.items())
        assert (data["model"], data["model_version"]) == ("default", 1)
        assert (data["cause"], data["cause_event_id"]) == ("event", change.cause_event_id)
    assert {m.json()["id"] for m in got} == set(by_id)

    w.wait_processed(last_sent(docs, sent))
    before = w.record(cid)
    assert before is not None and before.state is not None

    # a producer redelivers the same events (new offsets, same event ids): nothing changes
    again = w.produce_events(docs)
    assert min(s.offset for s in again) > max(s.offset for s in sent)
    w.wait_processed(last_sent(docs, again))
    after = w.record(cid)
    assert after is not None
    assert after.state == before.state
    assert after.version > before.version  # the redelivery was processed, and was a no-op
    assert len(mine(w.read_all(w.settings.output_topic))) == 2


# --------------------------------------------------------------------------- 5


async def _nps_counts(w: Worker) -> dict[str, int]:
    client = connect(w.settings.redis_url)
    try:
        return await StateStore(client, w.keys).nps_counts()
    finally:
        await client.aclose()


def test_nps_counts_per_day_category_and_tier(workers: dict[str, Worker]) -> None:
    w = workers["default"]
    tag = unique("nps")
    # days of their own: no other test of this module sends events on them
    d1 = int(datetime(2021, 3, 1, tzinfo=UTC).timestamp() * 1000)
    d2 = d1 + DAY_MS
    n1, n2, n3 = f"{tag}-1", f"{tag}-2", f"{tag}-3"
    nps_n3 = event(unique("e"), n3, "nps_response", d2 + 9 * 3_600_000 + 1000, score=7)
    keyed = [
        event(unique("e"), n1, "nps_response", d1 + 10 * 3_600_000, score=9),
        event(unique("e"), n3, "webinar_attended", d2 + 9 * 3_600_000),
        event(unique("e"), n3, "webinar_attended", d2 + 9 * 3_600_000),  # warm from here
        nps_n3,
        event(unique("e"), n1, "nps_response", d2 + 12 * 3_600_000, score=10),
    ]
    # n2's answer arrives on a partition that is not its customer's: re-keyed, counted once
    n2_doc = event(unique("e"), n2, "nps_response", d1 + 11 * 3_600_000, score=3)
    wrong = (expected_partition(n2, 4) + 1) % 4
    sent = w.produce(
        [Out(dumps(d), d["customer_id"].encode()) for d in keyed]
        + [Out(dumps(n2_doc), None, wrong)]
    )
    assert sent[-1].partition == wrong

    day1, day2 = "2021-03-01", "2021-03-02"
    expected = {
        f"{day1}|*|promoter": 1,
        f"{day1}|cold|promoter": 1,
        f"{day1}|*|detractor": 1,
        f"{day1}|cold|detractor": 1,
        f"{day2}|*|passive": 1,
        f"{day2}|warm|passive": 1,
        f"{day2}|*|promoter": 1,
        f"{day2}|cold|promoter": 1,
    }
    folded = fold((dumps(d) for d in [*keyed, n2_doc]), w.model)
    offline = Counter(
        f
        for cid in (n1, n2, n3)
        for day, tier, cat in folded[cid].nps
        for f in (f"{day}|*|{cat}", f"{day}|{tier}|{cat}")
    )
    assert offline == expected  # the hand count agrees with the core

    def ours() -> dict[str, int]:
        counts = asyncio.run(_nps_counts(w))
        return {k: v for k, v in counts.items() if k.startswith((day1, day2))}

    w.wait(lambda: ours() == expected, what=f"NPS counts {expected}, have {ours()}")

    # the same answer again (a duplicate event id) changes no count
    dup = w.produce([Out(dumps(nps_n3), n3.encode())])
    w.wait_processed({n3: dup[0]})
    assert w.state(n2) is not None
    assert ours() == expected
    by_cat = Counter[str]()
    for k, v in ours().items():
        if "|*|" in k:
            by_cat[k.rsplit("|", 1)[1]] += v
    assert nps(by_cat["promoter"], by_cat["passive"], by_cat["detractor"]) == 25
    n3_state = w.state(n3)
    assert n3_state is not None and n3_state.events_applied == 3


# --------------------------------------------------------------------------- stop, restart


def test_a_worker_stopped_mid_stream_exits_cleanly_and_its_successor_loses_nothing(
    tansu: LocalService, redis_server: LocalService, tmp_path: Path
) -> None:
    first = start_worker(tansu, redis_server, tmp_path, name="restart")
    second: Worker | None = None
    try:
        first.wait_ready(at_ms=OLD_MS)
        config = simulator.SimConfig.ending(now_ms(), 60, customers=200, seed=11)
        tag = unique("rs")
        docs = renamed(list(simulator.history(config)), f"{tag}-")
        sent = first.produce_events(docs)
        customers = sorted({d["customer_id"] for d in docs})
        first.wait(
            lambda: any(s is not None for s in first.states(customers).values()),
            what="the first batches scored",
        )
        began = time.monotonic()
        unclean = stop_all([first])  # SIGTERM while batches are in flight
        assert not unclean, "\n".join(unclean)
        # well within stop_all's 20 s: the worker stopped by itself, not by SIGKILL
        assert time.monotonic() - began < 15

        second = relaunch(first, "restart-2")  # same group, topics and key prefix
        at_stop = second.states(customers)  # the successor has not joined the group yet
        done = sum(s.events_applied for s in at_stop.values() if s is not None)
        assert 0 < done < len(docs), (done, len(docs))  # it does have work left
        second.wait_processed(last_sent(docs, sent), timeout=90)
        expected = fold((dumps(d) for d in docs), second.model)
        states = second.states(customers)
        horizon = max([now_ms(), *(s.clock_ms for s in states.values() if s)])
        counts = Counter(d["customer_id"] for d in docs)
        problems = {}
        for cid, f in expected.items():
            got = states[cid]
            assert got is not None and f.state is not None
            diffs = state_differences(
                settle(got, cid, second.model, horizon),
                settle(f.state, cid, second.model, horizon),
                second.model,
                at_ms=horizon,
            )
            if got.events_applied != counts[cid]:  # each event applied exactly once
                diffs.append(f"events_applied {got.events_applied} != {counts[cid]}")
            if diffs:
                problems[cid] = diffs
        assert not problems, problems
    finally:
        unclean = stop_all([w for w in (first, second) if w is not None])
    assert not unclean, "\n".join(unclean)

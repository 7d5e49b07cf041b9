"""What the worker publishes: a dead letter for every reason, changes as CloudEvents."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import jsonschema
import pytest

from scoring import REASONS, InvalidEvent, load_default_model, parse_event
from stream_app.contracts import rfc3339
from stream_app.messages import expected_partition
from tests.integration.workers import DAY_MS, Worker, dumps, event, now_ms, unique
from tests.support.diff import close
from tests.support.fold import fold
from tests.support.kafka import Out, last_sent

pytestmark = pytest.mark.integration


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

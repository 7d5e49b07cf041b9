"""One message's or one customer's failure stays with it: dead-lettered with a reason code,
the record untouched, the rest of the batch scored (``tests/support/fakes.py``; the
same cases against real Tansu and Redis are in ``tests/faults/poison_state.py``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import scoring
from stream_app.messages import OutMessage, Record, Topics, expected_partition
from stream_app.store.records import CustomerRecord, encode_record
from stream_app.store.state import wrong_type
from stream_app.worker import batch as pipeline
from stream_app.worker.batch import BatchProcessor
from stream_app.worker.deadletter import KEPT_KEY_BYTES, MAX_KEY_BYTES
from tests.support.fakes import Collect, MemoryStore

MODEL = scoring.load_default_model()
NOW_S = 1_800_000_000.0
TS = 1_799_999_000_000
SCHEMA = json.loads(
    (Path(__file__).parents[1] / "docs" / "schemas" / "dead-letter.schema.json").read_text()
)


class Broker(Collect):
    """Acknowledges messages up to ``limit`` bytes (key + value), refuses the batch else."""

    def dead(self) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in self.on("dlq")]

    def changes_of(self, cid: str) -> list[OutMessage]:
        return [m for m in self.on("out") if m.key == cid.encode()]


def processor(store: MemoryStore, broker: Broker, **kw: Any) -> BatchProcessor:
    return BatchProcessor(
        model=MODEL,
        topics=Topics("in", "in.by", "out", "dlq", 4),
        store=store,
        publisher=broker,
        explain_events=3,
        clock=lambda: NOW_S,
        **kw,
    )


def event(cid: str, eid: str, ts: int = TS, type_: str = "webinar_attended") -> bytes:
    return orjson.dumps({"event_id": eid, "customer_id": cid, "type": type_, "timestamp": ts})


def rec(value: bytes | None, offset: int, cid: str = "c-1", key: bytes | None = None) -> Record:
    return Record("in", expected_partition(cid, 4), offset, key or cid.encode(), value)


def run(p: BatchProcessor, records: list[Record]) -> pipeline.BatchStats:
    return asyncio.run(p.process(records))


def test_a_corrupt_record_is_left_untouched_and_its_events_dead_lettered() -> None:
    raw = encode_record(7, {"i0": 3}, b"\x07garbage", token="7.abc")
    store = MemoryStore({"bad": CustomerRecord(7, {"i0": 3}, b"\x07garbage", token="7.abc")})
    broker = Broker()
    p = processor(store, broker)
    stats = run(p, [rec(event("bad", "b1"), 10, "bad"), rec(event("ok", "o1"), 11, "ok"),
                    rec(event("bad", "b2"), 12, "bad")])  # fmt: skip
    assert stats.dead == {"corrupt_state": 2} and stats.applied == 1
    assert [w.customer_id for w in store.writes] == ["ok"]
    assert encode_record(7, store.records["bad"].marks, b"\x07garbage", token="7.abc") == raw
    dead = broker.dead()
    assert [(d["reason"], d["event_id"], d["customer_id"]) for d in dead] == [
        ("corrupt_state", "b1", "bad"),
        ("corrupt_state", "b2", "bad"),
    ]
    assert "does not decode" in dead[0]["detail"]
    assert base64.b64decode(dead[0]["payload_b64"]) == event("bad", "b1")
    assert not broker.changes_of("bad")
    for d in dead:
        jsonschema.Draft202012Validator(SCHEMA).validate(d)
    # later events meet the same record: dead-lettered the same way, until it is repaired
    stats = run(p, [rec(event("bad", "b3"), 13, "bad")])
    assert stats.dead == {"corrupt_state": 1}
    store.records.pop("bad")  # an operator deletes it: the customer starts again
    stats = run(p, [rec(event("bad", "b4"), 14, "bad")])
    assert stats.applied == 1 and not stats.dead


def test_a_record_the_store_flags_is_dead_lettered_with_its_reason() -> None:
    store = MemoryStore({"hash": CustomerRecord(fault=wrong_type("hash"))})
    broker = Broker()
    stats = run(processor(store, broker), [rec(event("hash", "h1"), 3, "hash")])
    assert stats.dead == {"store_rejected": 1} and not store.writes
    assert broker.dead()[0]["detail"].startswith("WRONGTYPE")


def test_redelivered_events_of_a_corrupt_customer_are_not_dead_lettered_again() -> None:
    src = f"i{expected_partition('bad', 4)}"
    store = MemoryStore({"bad": CustomerRecord(2, {src: 20}, b"\x00", token="2.x")})
    broker = Broker()
    stats = run(processor(store, broker), [rec(event("bad", "b0"), 20, "bad"),
                                           rec(event("bad", "b1"), 21, "bad")])  # fmt: skip
    assert stats.redelivered == 1 and stats.dead == {"corrupt_state": 1}


def test_a_failure_while_folding_a_customer_stays_with_that_customer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = pipeline.encode_state

    def encode(state: scoring.CustomerState) -> bytes:
        if state.events_applied == 2:
            raise OverflowError("the encoder broke")
        return real(state)

    monkeypatch.setattr(pipeline, "encode_state", encode)
    store = MemoryStore()
    broker = Broker()
    stats = run(processor(store, broker), [rec(event("two", "t1"), 1, "two"),
                                           rec(event("one", "u1"), 2, "one"),
                                           rec(event("two", "t2", TS + 1), 3, "two")])  # fmt: skip
    assert stats.dead == {"internal_error": 2} and stats.applied == 1
    assert [w.customer_id for w in store.writes] == ["one"]
    assert broker.dead()[0]["detail"] == "OverflowError: the encoder broke"
    assert not broker.changes_of("two")


def test_a_huge_key_is_dead_lettered_within_the_broker_limit() -> None:
    """400 KB key + 600 KB value: the dead letter used to copy the key whole (1.1 MB), the
    producer refused it on every retry and the worker stalled."""
    key, value = b"k" * 400_000, b'{"pad": "' + b"v" * 599_980 + b'"}'
    broker = Broker()
    stats = run(
        processor(MemoryStore(), broker), [rec(value, 5, key=key), rec(event("c-1", "e"), 6)]
    )
    assert stats.dead == {"key_too_large": 1} and stats.applied == 1
    (msg,) = [m for m in broker.sent if m.topic == "dlq"]
    assert msg.key is None and len(msg.value) < 1_000_000 - 512
    dead = orjson.loads(msg.value)
    assert dead["key_size"] == 400_000 and dead["key_sha256"] == hashlib.sha256(key).hexdigest()
    assert len(base64.b64decode(dead["key_b64"])) == KEPT_KEY_BYTES
    assert dead["payload_size"] == len(value) and dead["payload_truncated"] is True
    jsonschema.Draft202012Validator(SCHEMA).validate(dead)


@pytest.mark.parametrize("limit", [16_384, 100_000, 1_000_000])
def test_every_dead_letter_fits_the_configured_limit(limit: int) -> None:
    broker = Broker(limit=limit)
    p = processor(MemoryStore(), broker, max_message_bytes=limit)
    records = [
        rec(b"x" * 2_000_000, 1, key=b"k" * MAX_KEY_BYTES),
        rec(b"\x00" * 900_000, 2, key=b"q" * (MAX_KEY_BYTES + 1)),
        rec(None, 3),
    ]
    stats = run(p, records)
    assert sum(stats.dead.values()) == 3
    assert all(len(m.value) + len(m.key or b"") <= limit - 512 for m in broker.sent)
    for d in broker.dead():
        jsonschema.Draft202012Validator(SCHEMA).validate(d)


def test_events_older_than_the_limit_are_dead_lettered() -> None:
    broker = Broker()
    p = processor(MemoryStore(), broker, max_age_ms=400 * 86_400_000)
    stats = run(p, [rec(event("c-1", "old", ts=0), 1), rec(event("c-1", "new"), 2)])
    assert stats.dead == {"timestamp_too_old": 1} and stats.applied == 1
    assert broker.dead()[0]["reason"] == "timestamp_too_old"

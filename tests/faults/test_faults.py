"""The delivery guarantees under faults (issue 5), at small scale; the soak is ``scripts/faults``.

Each integration test runs one scenario of the harness (:mod:`tests.faults.scenarios`)
against its own Tansu and redis-server (a restart never touches another test) with real worker
processes, and checks it against one clean offline pass of the same log. The first tests are
the regression tests of the bugs the harness found; they need no services.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from scoring import (
    Event,
    InvalidEvent,
    apply,
    encode_state,
    fingerprint,
    load_default_model,
    parse_event,
)
from stream_app import jsonutil
from stream_app.contracts import MAX_DEAD_PAYLOAD, dead_letter
from stream_app.messages import Record, Topics, expected_partition
from stream_app.store.records import CustomerRecord
from stream_app.worker.batch import BatchProcessor
from tests.support.fakes import Collect, MemoryStore

from .config import Config, Result
from .group import scenario_group
from .lifecycle import scenario_lifecycle
from .report import format_details
from .scenarios import (
    scenario_broker,
    scenario_kill,
    scenario_poison,
    scenario_redis,
    scenario_slow_redis,
)
from .workload import hostile_messages, raw_of

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
TOPICS = Topics(input="in", by_customer="in.by", output="out", dlq="dlq", input_partitions=4)


# =========================================================================== regression tests


def _processor(store: MemoryStore | None = None) -> tuple[BatchProcessor, MemoryStore, Collect]:
    store = store or MemoryStore()
    pub = Collect()
    proc = BatchProcessor(
        model=load_default_model(),
        topics=TOPICS,
        store=store,
        publisher=pub,
        explain_events=0,
        clock=lambda: 1_800_000_000.0,
    )
    return proc, store, pub


def _event(cid: str, eid: str, ts: int = 1_700_000_000_000) -> bytes:
    return orjson.dumps(
        {"event_id": eid, "customer_id": cid, "type": "webinar_attended", "timestamp": ts}
    )


def _rec(value: bytes | None, offset: int, cid: str = "c-1") -> Record:
    return Record("in", expected_partition(cid, 4), offset, cid.encode(), value)


def _dead(pub: Collect) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in pub.sent if m.topic == "dlq"]


def test_a_tombstone_is_dead_lettered_not_retried_forever() -> None:
    """Bug: a message with no value (a tombstone) made ``parse_event`` raise TypeError, the
    batch failed and was retried forever: the worker stalled on it."""
    proc, store, pub = _processor()
    stats = asyncio.run(proc.process([_rec(None, 0), _rec(_event("c-1", "e1"), 1)]))
    assert stats.dead == {"not_json": 1} and stats.applied == 1
    (dead,) = _dead(pub)
    assert dead["reason"] == "not_json" and "tombstone" in dead["detail"]
    assert dead["payload_b64"] == "" and dead["source"]["offset"] == 0
    assert [w.customer_id for w in store.writes] == ["c-1"]


def test_a_message_that_breaks_the_parser_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same class of poison pill: any exception while parsing one message dead-letters
    that message (``internal_error``) instead of failing the batch over and over."""
    from stream_app.worker import parsing as pipeline  # (where the batch parses)

    real = pipeline.parse_event

    def flaky(raw: bytes, *args: Any, **kwargs: Any) -> Any:
        if b"boom" in raw:
            raise RecursionError("parser bug")
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(pipeline, "parse_event", flaky)
    proc, _, pub = _processor()
    stats = asyncio.run(proc.process([_rec(b'{"boom": 1}', 0), _rec(_event("c-1", "e1"), 1)]))
    assert stats.dead == {"internal_error": 1} and stats.applied == 1
    assert _dead(pub)[0]["detail"] == "RecursionError: parser bug"


def test_a_huge_message_gives_a_dead_letter_that_can_be_published() -> None:
    """Bug: a 1 MiB message became a 1.4 MB dead letter, over the producer's 1,000,000-byte
    request limit: the publish failed on every retry and the worker stalled for good."""
    big = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    proc, _, pub = _processor()
    stats = asyncio.run(proc.process([_rec(big, 0), _rec(_event("c-1", "e1"), 1)]))
    assert stats.dead == {"too_large": 1} and stats.applied == 1
    (dead,) = _dead(pub)
    kept = base64.b64decode(dead["payload_b64"])
    assert len(kept) == MAX_DEAD_PAYLOAD and big.startswith(kept)
    assert dead["payload_truncated"] is True and dead["payload_size"] == len(big)
    schema = json.loads((SCHEMAS / "dead-letter.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator(schema).validate(dead)


@pytest.mark.parametrize("size", [0, 1, MAX_DEAD_PAYLOAD, MAX_DEAD_PAYLOAD + 1, 8 * 1024 * 1024])
def test_every_dead_letter_fits_the_default_request_size(size: int) -> None:
    body = dead_letter(
        reason="too_large",
        detail=f"message is {size} bytes, the limit is 65536",
        topic="t" * 249,
        partition=2**31 - 1,
        offset=2**63 - 1,
        payload=b"\xff" * size,
        received_ms=253_402_300_799_999,
    )
    assert len(jsonutil.dumps(body)) < 1_000_000
    assert ("payload_truncated" in body) == (size > MAX_DEAD_PAYLOAD)


def test_offsets_below_the_marks_with_unseen_event_ids_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug (documented, detected): after the broker lost its log (an in-memory Tansu restart,
    a topic recreated) offsets start again at 0 and the per-customer marks make new events
    look like redeliveries. The worker cannot tell them apart by offset; it now says so."""
    model = load_default_model()
    state = apply(None, Event("old-1", "c-1", "webinar_attended", 1_700_000_000_000), model).state
    src = f"i{expected_partition('c-1', 4)}"
    store = MemoryStore({"c-1": CustomerRecord(1, {src: 500}, encode_state(state))})
    proc, _, _ = _processor(store)
    with caplog.at_level(logging.WARNING, logger="stream_app.worker.batch"):
        stats = asyncio.run(
            proc.process([_rec(_event("c-1", "old-1"), 7), _rec(_event("c-1", "new-1"), 8)])
        )
    # a true redelivery (its id is among the recent ones) is not suspect; the new event is
    assert stats.redelivered == 2 and stats.suspect_redelivered == 1
    assert fingerprint("old-1") in state.recent_ids
    assert "skipped 1 message(s) as already applied" in caplog.text


def test_every_hostile_message_is_invalid() -> None:
    """The generator's own promise: nothing it makes is a valid event."""
    model = load_default_model()
    kinds = set()
    for kind, out in hostile_messages(600, seed=3, big=True):
        kinds.add(kind)
        with pytest.raises(InvalidEvent):
            parse_event(raw_of(out.value), model, now_ms=int(time.time() * 1000))
    assert len(kinds) >= 15


# =========================================================================== scenarios


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """Small scale: a few thousand events over 200 customers (the soak runs the full size)."""
    return Config(events=3000, customers=200, kills=2, hostile=2000, workdir=tmp_path, quiet=8.0)


def _check(result: Result, fault_results: list[Result]) -> None:
    fault_results.append(result)
    assert result.error is None, result.error
    assert result.ok, format_details([result])


@pytest.mark.integration
def test_kill_the_worker_at_random_moments(cfg: Config, fault_results: list[Result]) -> None:
    r = scenario_kill(cfg)
    _check(r, fault_results)
    assert r.faults == cfg.kills


@pytest.mark.integration
def test_rebalances_and_a_fenced_out_worker(cfg: Config, fault_results: list[Result]) -> None:
    r = scenario_group(cfg)
    _check(r, fault_results)
    # a was caught in the middle of a batch: its stale writes lost against the fence, or (frozen
    # beyond the Redis socket timeout) its batch started again from fresh reads
    fenced = r.details["fencing: stale writes rejected (a's log)"]
    assert fenced + r.details["fencing: stale batch re-read after a Redis timeout"] > 0
    assert r.details["fencing: monotone"] is True


@pytest.mark.integration
def test_redis_killed_with_appendfsync_always(cfg: Config, fault_results: list[Result]) -> None:
    r = scenario_redis(cfg, "always")
    _check(r, fault_results)
    assert r.details["customers whose record went back (seen at restart)"] == 0


@pytest.mark.integration
def test_redis_losing_its_last_second_with_everysec(
    cfg: Config, fault_results: list[Result]
) -> None:
    """Measured, not a pass: what a crash of the machine costs with ``appendfsync everysec``.
    Still the worker survives and nothing is counted twice."""
    r = scenario_redis(cfg, "everysec")
    _check(r, fault_results)


@pytest.mark.integration
def test_broker_restart_loses_its_log(cfg: Config, fault_results: list[Result]) -> None:
    """Measured: the worker reconnects by itself and goes on; the state written before stays;
    events whose offsets fall at or below a customer's mark are skipped and reported."""
    r = scenario_broker(cfg)
    _check(r, fault_results)
    assert r.recovery_s is not None
    assert r.details["phase-1 state kept (customers whose events_applied went back)"] == 0


@pytest.mark.integration
def test_poison_messages(cfg: Config, fault_results: list[Result]) -> None:
    r = scenario_poison(cfg)
    _check(r, fault_results)
    assert r.faults == cfg.hostile
    assert r.details["worker log: batch retries (world / exception)"].endswith("/ 0")


@pytest.mark.integration
def test_slow_redis(cfg: Config, fault_results: list[Result]) -> None:
    r = scenario_slow_redis(cfg)
    _check(r, fault_results)


@pytest.mark.integration
def test_erase_and_merge_under_kill_9(cfg: Config, fault_results: list[Result]) -> None:
    """Erase and merge requests mixed into the workload while the worker is killed -9 and
    restarted: the reference carries the requests out; erased ids leave no trace."""
    r = scenario_lifecycle(cfg)
    _check(r, fault_results)
    assert r.faults == cfg.kills
    erased, merged = r.details["lifecycle: erased / merged away (chain A->B->C incl.)"].split(" / ")
    assert int(erased) == 3 and int(merged) == 5
    dropped, sent_on = r.details[
        "lifecycle: events dropped as erased / sent on to a survivor (reference)"
    ].split(" / ")
    assert int(dropped) >= 3 and int(sent_on) >= 9

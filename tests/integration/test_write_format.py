"""The two-step rolling upgrade, against real Tansu and Redis: a worker with
``ENGAGEMENT_WRITE_FORMAT=previous`` stores records the previous release reads (record
format 1, explanation format 3 with the ids as sent, checked with that release's own code);
a worker without the setting then reads them and rewrites each customer in record format 2
(explanation format 4) on its next event. The scores are the offline fold's throughout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scoring import decode_explanation, decode_state
from scoring.codec.explain import EXPLANATION_FORMAT, FINGERPRINTS_FORMAT, id_fingerprint
from stream_app.devkit.stack import LocalService
from stream_app.settings import Settings
from stream_app.store.records import RECORD_FORMAT, decode_record
from tests.integration.workers import Worker, dumps, event, launch, now_ms, start_worker
from tests.support import previous_release as previous
from tests.support.diff import state_diffs
from tests.support.fold import fold
from tests.support.kafka import Sent

pytestmark = pytest.mark.integration

CUSTOMERS = ["wf-a", "wf-b", "wf-c"]
KINDS = ["webinar_attended", "email_click", "review_submitted", "web_visit"]
#: A format-1 record: fence token, marks as text (or "-"), the state's length as digits.
FORMAT_1 = re.compile(rb"\A[^ ]+ (-|[a-z0-9]+=[0-9]+(,[a-z0-9]+=[0-9]+)*) [0-9]+ ")


def last_sent(docs: list[dict[str, object]], sent: list[Sent]) -> dict[str, Sent]:
    return {str(d["customer_id"]): s for d, s in zip(docs, sent, strict=True)}


def raw_record(w: Worker, cid: str) -> bytes:
    raw = w.redis.get(w.keys.state(cid))
    assert isinstance(raw, bytes), f"{cid}: no record"
    return raw


def check_scores(w: Worker, docs: list[dict[str, object]]) -> None:
    expected = fold([dumps(d) for d in docs], w.model)
    states = {
        c: decode_state(decode_record(raw_record(w, c)).state or b"", w.model) for c in CUSTOMERS
    }
    diffs = state_diffs(
        states, {c: expected[c].state for c in CUSTOMERS}, w.model, horizon_ms=now_ms()
    )
    assert not diffs, diffs


def test_previous_then_current(
    tansu: LocalService, redis_server: LocalService, tmp_path: Path
) -> None:
    start = now_ms() - 3_600_000
    first = [
        event(f"{cid}/{n}", cid, kind, start + n * 1000)
        for cid in CUSTOMERS
        for n, kind in enumerate(KINDS)
    ]
    # step 1: the new release, writing what the previous one reads
    old = start_worker(tansu, redis_server, tmp_path, name="wf", ENGAGEMENT_WRITE_FORMAT="previous")
    try:
        old.wait_ready()
        old.wait_processed(last_sent(first, old.produce_events(first)))
        for cid in CUSTOMERS:
            raw = raw_record(old, cid)
            assert FORMAT_1.match(raw), raw[:60]
            rec = previous.decode_record(raw)  # the previous release reads it...
            assert rec == decode_record(raw)  # ...as this one does
            assert rec.explain is not None and rec.explain[0] == EXPLANATION_FORMAT
            recent = previous.decode_explanation(rec.explain, old.model).recent
            assert [r[3] for r in recent] == [f"{cid}/{n}" for n in reversed(range(len(KINDS)))]
        check_scores(old, first)
    finally:
        assert old.stop(), old.log_tail()

    # step 2: the setting removed; each customer's next write stores format 2
    env = {**old.env, "ENGAGEMENT_WRITE_FORMAT": "current"}
    new = launch(
        "wf-current", env, Settings.from_env(env), tmp_path / "current.log", redis_server.url
    )
    try:
        new.wait_ready()
        untouched = raw_record(new, CUSTOMERS[0])
        assert FORMAT_1.match(untouched)  # (no event yet: still format 1, still read)
        later = [event(f"{cid}/late", cid, "email_open", start + 60_000) for cid in CUSTOMERS]
        new.wait_processed(last_sent(later, new.produce_events(later)))
        for cid in CUSTOMERS:
            raw = raw_record(new, cid)
            rec = decode_record(raw)
            assert raw[len(rec.token) + 1] == RECORD_FORMAT and not FORMAT_1.match(raw)
            assert rec.explain is not None and rec.explain[0] == FINGERPRINTS_FORMAT
            shown = [r[3] for r in decode_explanation(rec.explain, new.model).recent]
            ids = [f"{cid}/{n}" for n in range(len(KINDS))] + [f"{cid}/late"]
            assert shown == [id_fingerprint(e) for e in reversed(ids)]
        check_scores(new, first + later)
    finally:
        assert new.stop(), new.log_tail()

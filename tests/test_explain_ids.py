"""The explanation's event ids as the worker stores them: fingerprints by default (format
4), as sent with ``explain_full_ids`` (format 3), records of either form read by both; and
the dedup memory, which keeps fingerprints in either case."""

from __future__ import annotations

import asyncio

import orjson

import scoring
from scoring.codec.explain import EXPLANATION_FORMAT, FINGERPRINTS_FORMAT, id_fingerprint
from stream_app.messages import Record, Topics, expected_partition
from stream_app.settings import Settings
from stream_app.worker.batch import BatchProcessor
from stream_app.worker.scorer import ScoringOptions
from tests.support.fakes import Collect, MemoryStore

MODEL = scoring.load_default_model()
NOW_S = 1_800_000_000.0
TS = 1_799_999_000_000
CID = "c-ids"
UUIDS = [f"6f1c2a9e-0000-4000-8000-{n:012d}" for n in range(6)]


def processor(store: MemoryStore, **kw: object) -> BatchProcessor:
    return BatchProcessor(
        model=MODEL,
        topics=Topics("in", "in.by", "out", "dlq", 4),
        store=store,
        publisher=Collect(),
        explain_events=4,
        clock=lambda: NOW_S,
        **kw,  # type: ignore[arg-type]
    )


def records(ids: list[str], first_offset: int = 0) -> list[Record]:
    p = expected_partition(CID, 4)
    return [
        Record(
            "in",
            p,
            first_offset + n,
            CID.encode(),
            orjson.dumps(
                {
                    "event_id": eid,
                    "customer_id": CID,
                    "type": "email_open",
                    "timestamp": TS + first_offset + n,
                }
            ),
        )
        for n, eid in enumerate(ids)
    ]


def stored_explanation(store: MemoryStore) -> bytes:
    raw = store.records[CID].explain
    assert raw is not None
    return raw


def test_by_default_the_explanation_keeps_fingerprints_of_the_ids() -> None:
    store = MemoryStore()
    asyncio.run(processor(store).process(records(UUIDS[:3])))
    raw = stored_explanation(store)
    assert raw[0] == FINGERPRINTS_FORMAT
    shown = [r[3] for r in scoring.decode_explanation(raw, MODEL).recent]
    assert shown == [id_fingerprint(e) for e in reversed(UUIDS[:3])]
    assert not any(e.encode() in raw for e in UUIDS)
    # the same events, ids kept: 31 bytes more per kept event with a UUID for an id
    full = MemoryStore()
    asyncio.run(processor(full, explain_full_ids=True).process(records(UUIDS[:3])))
    assert len(stored_explanation(full)) == len(raw) + 3 * (len(UUIDS[0]) + 1 - 6)


def test_full_ids_keep_the_ids_as_sent() -> None:
    store = MemoryStore()
    asyncio.run(processor(store, explain_full_ids=True).process(records(UUIDS[:3])))
    raw = stored_explanation(store)
    assert raw[0] == EXPLANATION_FORMAT
    shown = [r[3] for r in scoring.decode_explanation(raw, MODEL).recent]
    assert shown == list(reversed(UUIDS[:3]))


def test_changing_the_setting_reads_what_the_other_wrote() -> None:
    """Full ids, then fingerprints: the old ids become fingerprints on the next write;
    back to full ids: new ids are kept as sent, the fingerprinted ones stay so."""
    store = MemoryStore()
    asyncio.run(processor(store, explain_full_ids=True).process(records(UUIDS[:2])))
    asyncio.run(processor(store).process(records(UUIDS[2:4], first_offset=2)))
    raw = stored_explanation(store)
    assert raw[0] == FINGERPRINTS_FORMAT
    recent = [r[3] for r in scoring.decode_explanation(raw, MODEL).recent]
    assert recent == [id_fingerprint(e) for e in reversed(UUIDS[:4])]
    asyncio.run(processor(store, explain_full_ids=True).process(records(UUIDS[4:5], 4)))
    raw = stored_explanation(store)
    assert raw[0] == EXPLANATION_FORMAT
    recent = [r[3] for r in scoring.decode_explanation(raw, MODEL).recent]
    assert recent == [UUIDS[4], *(id_fingerprint(e) for e in reversed(UUIDS[1:4]))]


def test_duplicates_are_found_by_fingerprint_whatever_the_setting() -> None:
    for full in (False, True):
        store = MemoryStore()
        p = processor(store, explain_full_ids=full)
        asyncio.run(p.process(records(UUIDS[:3])))
        state = scoring.decode_state(store.records[CID].state or b"", MODEL)
        assert state.recent_ids == tuple(scoring.fingerprint(e) for e in UUIDS[:3])
        # the same ids again, at new offsets (a producer's retry): duplicates, no change
        stats = asyncio.run(p.process(records(UUIDS[:3], first_offset=10)))
        assert stats.duplicate == 3 and stats.applied == 0
        again = scoring.decode_state(store.records[CID].state or b"", MODEL)
        assert again.events_applied == state.events_applied == 3


def test_the_setting_reaches_the_scorer() -> None:
    assert Settings().explain_full_ids is False
    on = Settings.from_env({"ENGAGEMENT_EXPLAIN_FULL_IDS": "true"})
    assert ScoringOptions.from_settings(on).explain_full_ids is True
    assert ScoringOptions.from_settings(Settings()).explain_full_ids is False

"""``ENGAGEMENT_WRITE_FORMAT=previous``: what this release then writes is what the previous
release reads, byte for byte what it would have written (record format 1, explanation
format 3 with the ids as sent), checked against that release's own code
(:mod:`tests.support.previous_release`); and this release reads it back unchanged."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scoring
from scoring import Event, Explanation, decode_explanation, encode_explanation, explain_add
from scoring.codec.explain import EXPLANATION_FORMAT, FINGERPRINTS_FORMAT
from stream_app.messages import Record, Topics, expected_partition
from stream_app.settings import Settings, SettingsError
from stream_app.store.records import (
    PREVIOUS_RECORD_FORMAT,
    RECORD_FORMAT,
    CustomerRecord,
    decode_record,
    encode_record,
    new_token,
)
from stream_app.worker.scorer import Scorer, ScoringOptions
from tests.support import previous_release as previous
from tests.support.fakes import Collect, MemoryStore

MODEL = scoring.load_default_model()
TYPES = sorted(MODEL.event_types)
T0 = 1_764_000_000_000

# the marks a worker writes: input and by-customer partitions, alias sources, the epoch
mark_names = st.from_regex(r"(i|r|ai|ar)[0-9]{1,3}|m", fullmatch=True)
marks = st.dictionaries(mark_names, st.integers(0, 2**63 - 1), max_size=6)
tokens = st.one_of(
    st.integers(0, 10**9).map(new_token),  # this release's write ids (base64url)
    st.builds(  # the previous release's write ids (hex)
        lambda v, wid: f"{v}.{wid}",
        st.integers(0, 10**9),
        st.from_regex(r"[0-9a-f]{1,14}", fullmatch=True),
    ),
    st.integers(0, 10**9).map(str),  # a bare version
)
blobs = st.binary(max_size=400)
event_ids = st.one_of(
    st.uuids().map(str),
    st.text(min_size=1, max_size=80),  # any text: UTF-8 of several bytes, spaces...
    st.text(min_size=256, max_size=300),  # long enough for 2-byte lengths
)
events = st.lists(
    st.tuples(event_ids, st.sampled_from(TYPES), st.integers(-(10**10), 10**10), st.booleans()),
    min_size=1,
    max_size=20,
)


def build(evs: list[tuple[str, str, int, bool]], keep: int) -> Explanation:
    expl = None
    for eid, etype, dt, capped in evs:
        points = 0.0 if capped else MODEL.event_types[etype].points
        expl = explain_add(expl, Event(eid, "c1", etype, T0 + dt, None), points, MODEL, keep=keep)
    assert expl is not None
    return expl


@given(tokens, marks, blobs, blobs)
def test_previous_record_format_is_what_the_previous_release_reads(
    token: str, mk: dict[str, int], state: bytes, explain: bytes
) -> None:
    raw = encode_record(0, mk, state, explain, token, record_format=PREVIOUS_RECORD_FORMAT)
    assert raw == previous.encode_record(0, mk, state, explain, token)
    version = int(token.split(".", maxsplit=1)[0])
    expected = CustomerRecord(version, mk, state, explain or None, token)
    assert previous.decode_record(raw) == expected
    assert decode_record(raw) == expected  # and this release reads it back


def test_the_previous_release_cannot_read_the_current_record_format() -> None:
    """Why the setting exists: format 2 is refused by the previous release's reader."""
    raw = encode_record(3, {"i1": 40, "r1": 2}, b"[1]", b"[2]", "3.ab1")
    assert raw[len("3.ab1 ")] == RECORD_FORMAT
    with pytest.raises(ValueError):
        previous.decode_record(raw)
    old = encode_record(3, {"i1": 40, "r1": 2}, b"[1]", b"[2]", "3.ab1", record_format=1)
    assert previous.decode_record(old) == decode_record(raw)


def test_record_formats_and_marks_format_1_cannot_hold_are_refused() -> None:
    for bad in ("i1,r1", "a=b", "a b", ""):
        with pytest.raises(ValueError, match="mark name"):
            encode_record(1, {bad: 1}, b"", record_format=PREVIOUS_RECORD_FORMAT)
    with pytest.raises(ValueError, match="record format 3"):
        encode_record(1, {}, b"", record_format=3)


@settings(max_examples=200, deadline=None)
@given(events, st.integers(0, 12))
def test_explanation_format_3_is_what_the_previous_release_reads(
    evs: list[tuple[str, str, int, bool]], keep: int
) -> None:
    expl = build(evs, keep)
    raw = encode_explanation(expl, MODEL)  # (what the worker writes with "previous")
    assert raw[0] == EXPLANATION_FORMAT
    assert raw == previous.encode_explanation(expl, MODEL)
    assert previous.decode_explanation(raw, MODEL) == expl == decode_explanation(raw, MODEL)


@settings(max_examples=100, deadline=None)
@given(events, st.integers(1, 12))
def test_fingerprinted_ids_written_in_format_3_are_read_by_the_previous_release(
    evs: list[tuple[str, str, int, bool]], keep: int
) -> None:
    """An explanation read in format 4 (written by a worker without the setting) and
    written again with it: its ids stay the ``fp:`` strings, which both releases read."""
    printed = decode_explanation(
        encode_explanation(build(evs, keep), MODEL, fingerprints=True), MODEL
    )
    raw = encode_explanation(printed, MODEL)
    assert previous.decode_explanation(raw, MODEL) == printed
    assert encode_explanation(printed, MODEL, fingerprints=True)[0] == FINGERPRINTS_FORMAT
    with pytest.raises(scoring.UnknownFormat):
        previous.decode_explanation(encode_explanation(printed, MODEL, fingerprints=True), MODEL)


def test_the_setting() -> None:
    assert Settings().write_format == "current"
    current = ScoringOptions.from_settings(Settings())
    assert (current.record_format, current.explain_full_ids) == (RECORD_FORMAT, False)
    for full_ids in ("false", "true"):
        env = {"ENGAGEMENT_WRITE_FORMAT": "previous", "ENGAGEMENT_EXPLAIN_FULL_IDS": full_ids}
        opts = ScoringOptions.from_settings(Settings.from_env(env))
        assert (opts.record_format, opts.explain_full_ids) == (PREVIOUS_RECORD_FORMAT, True)
    with pytest.raises(SettingsError, match="ENGAGEMENT_WRITE_FORMAT: one of current, previous"):
        Settings.from_env({"ENGAGEMENT_WRITE_FORMAT": "1"})


def test_a_scorer_with_previous_keeps_the_explained_ids_as_sent() -> None:
    """Through the scorer as the worker builds it: the explanation it stores is read by
    the previous release, with the ids as sent (the record itself: tests/integration)."""
    env = {"ENGAGEMENT_WRITE_FORMAT": "previous"}
    store = MemoryStore()
    topics = Topics("in", "in.by", "out", "dlq", 4)
    options = ScoringOptions.from_settings(Settings.from_env(env))
    scorer = Scorer(
        model=MODEL, topics=topics, store=store, publisher=Collect(), options=options,
        clock=lambda: T0 / 1000 + 60,
    )  # fmt: skip
    cid, ids = "c-prev", ["6f1c2a9e-0000-4000-8000-000000000001", "ordre n° 2"]
    p = expected_partition(cid, 4)
    docs = [
        {"event_id": e, "customer_id": cid, "type": "email_open", "timestamp": T0 + n}
        for n, e in enumerate(ids)
    ]
    recs = [Record("in", p, n, cid.encode(), orjson.dumps(d)) for n, d in enumerate(docs)]
    asyncio.run(scorer.batch.process(recs))
    raw = store.records[cid].explain
    assert raw is not None and raw[0] == EXPLANATION_FORMAT
    assert [r[3] for r in previous.decode_explanation(raw, MODEL).recent] == ids[::-1]

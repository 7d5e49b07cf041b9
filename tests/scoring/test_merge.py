"""Merging two customers (scoring.merge) and lifecycle requests (scoring.lifecycle).

The score is a sum of exponentials, so a merge must equal the sum of both customers'
values at the common clock, and, without daily caps, scoring the union of their events.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring import Event, InvalidEvent, apply, load_default_model, values_at
from scoring.explain import contributions_at, explain_add
from scoring.lifecycle import lifecycle_event, parse_request
from scoring.merge import merge, merge_explanations
from scoring.state import CustomerState

MODEL = load_default_model()
DAY = 86_400_000
T0 = 1_700_000_000_000
TYPES = sorted(MODEL.event_types)

events = st.lists(
    st.tuples(st.sampled_from(TYPES), st.integers(0, 90 * DAY), st.integers(0, 10)),
    min_size=1,
    max_size=25,
)


def fold(customer: str, raw: list[tuple[str, int, int]], tag: str) -> CustomerState:
    state = None
    for n, (kind, at, score) in enumerate(raw):
        nps = score if kind == "nps_response" else None
        state = apply(state, Event(f"{tag}{n}", customer, kind, T0 + at, nps), MODEL).state
    assert state is not None
    return state


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=150, deadline=None)
@given(a=events, b=events)
def test_a_merge_is_the_sum_of_both_at_the_common_clock(
    a: list[tuple[str, int, int]], b: list[tuple[str, int, int]]
) -> None:
    src, into = fold("a", a, "x"), fold("b", b, "y")
    merged = merge(into, src, MODEL, customer_id="b", request_id="r1")
    clock = max(src.clock_ms, into.clock_ms)
    assert merged.state.clock_ms == clock
    got = values_at(merged.state, MODEL, clock)
    want_a, want_b = values_at(src, MODEL, clock), values_at(into, MODEL, clock)
    for dim in MODEL.dimensions:
        assert close(got.dimensions[dim], want_a.dimensions[dim] + want_b.dimensions[dim])
    assert close(got.score, want_a.score + want_b.score)
    assert merged.state.events_applied == src.events_applied + into.events_applied
    assert merged.state.last_event_ms == max(src.last_event_ms or 0, into.last_event_ms or 0)
    for name in MODEL.tracked:
        seen = [s.last_seen_of(MODEL, name) for s in (src, into)]
        known = [t for t in seen if t is not None]
        assert merged.state.last_seen_of(MODEL, name) == (max(known) if known else None)
    assert set(merged.state.recent_ids) == set(src.recent_ids) | set(into.recent_ids)
    assert all(c.cause in ("merge", "decay") for c in merged.changes)
    assert all(c.occurred_at_ms <= clock for c in merged.changes)
    # the same inputs give the same changes, ids included
    again = merge(into, src, MODEL, customer_id="b", request_id="r1")
    assert [c.change_id for c in again.changes] == [c.change_id for c in merged.changes]
    assert again.state == merged.state


@settings(max_examples=100, deadline=None)
@given(a=events, b=events)
def test_without_caps_a_merge_scores_the_union_of_both_histories(
    a: list[tuple[str, int, int]], b: list[tuple[str, int, int]]
) -> None:
    """In time order, without daily caps and in one dedup memory: the same values, NPS
    answer and last times as one customer who did everything."""
    a = [r for r in a if MODEL.event_types[r[0]].max_per_day is None]
    b = [r for r in b if MODEL.event_types[r[0]].max_per_day is None]
    if not a or not b:
        return
    a, b = sorted(a, key=lambda r: r[1]), sorted(b, key=lambda r: r[1])
    src, into = fold("a", a, "x"), fold("b", b, "y")
    tagged = [(r, "x", n) for n, r in enumerate(a)] + [(r, "y", n) for n, r in enumerate(b)]
    union = None
    for (kind, at, score), tag, n in sorted(tagged, key=lambda t: (t[0][1], t[1] == "y")):
        nps = score if kind == "nps_response" else None
        union = apply(
            union, Event(f"{tag}{n}", "b", kind, T0 + at, nps), MODEL, dedup_memory=64
        ).state
    assert union is not None
    merged = merge(into, src, MODEL, customer_id="b", request_id="r1").state
    clock = merged.clock_ms
    assert union.clock_ms == clock
    want, got = values_at(union, MODEL, clock), values_at(merged, MODEL, clock)
    assert close(got.score, want.score)
    assert (merged.nps_score, merged.nps_at_ms) == (union.nps_score, union.nps_at_ms)
    assert merged.last_seen == union.last_seen
    assert merged.events_applied == union.events_applied


def test_merging_into_a_customer_never_seen_gives_the_source_state() -> None:
    src = fold("a", [("webinar_attended", 0, 0)] * 2 + [("review_submitted", DAY, 0)], "x")
    merged = merge(None, src, MODEL, customer_id="b", request_id="r9")
    assert merged.state.values == src.values and merged.state.clock_ms == src.clock_ms
    assert merged.state.tier == src.tier
    assert [
        (c.customer_id, c.kind, c.entered, c.cause, c.cause_event_id) for c in merged.changes
    ] == [("b", "tier", True, "merge", "r9")]
    assert merge(src, CustomerState(), MODEL, customer_id="a", request_id="r").state == src


def test_cap_counters_add_up_to_the_cap() -> None:
    cap = MODEL.event_types["email_open"].max_per_day
    assert cap is not None
    a = fold("a", [("email_open", 0, 0)] * 1 + [("email_open", 1, 0)] * (cap - 1), "x")
    b = fold("b", [("email_open", 2, 0)] * 3, "y")
    merged = merge(b, a, MODEL, customer_id="b", request_id="r").state
    index = MODEL.event_type_names.index("email_open")
    assert [(k, n) for k, _, n in merged.caps if k == index] == [(index, cap)]


def test_explanations_merge_by_contribution() -> None:
    e1 = Event("x1", "a", "webinar_attended", T0, None)
    e2 = Event("y1", "b", "review_submitted", T0 + 5 * DAY, None)
    a = explain_add(None, e1, 10.0, MODEL)
    b = explain_add(None, e2, 8.0, MODEL)
    both = merge_explanations(b, a, MODEL, keep=10)
    assert both is not None
    at = T0 + 9 * DAY
    got = contributions_at(both, MODEL, at)
    want = {**contributions_at(a, MODEL, at), **contributions_at(b, MODEL, at)}
    assert got.keys() == want.keys()
    assert all(close(got[k], want[k]) for k in want)
    assert [r[3] for r in both.recent] == ["y1", "x1"]
    assert merge_explanations(None, a, MODEL, keep=10) == a


def test_requests_parse_and_refuse_what_is_wrong() -> None:
    def raw(**fields: object) -> bytes:
        import orjson

        doc = {"event_id": "r1", "customer_id": "c1", "timestamp": T0, **fields}
        return orjson.dumps(doc)

    erase = parse_request(raw(type="engagement.customer.erase"), now_ms=T0)
    assert erase is not None and (erase.kind, erase.customer_id, erase.into) == (
        "erase",
        "c1",
        None,
    )
    assert parse_request(raw(type="email_open"), now_ms=T0) is None
    assert parse_request(b"not json", now_ms=T0) is None
    for fields, reason in [
        ({"type": "engagement.customer.merge"}, "missing_field"),
        ({"type": "engagement.customer.merge", "properties": {"into": "a b"}}, "bad_field"),
        ({"type": "engagement.customer.merge", "properties": {"into": "c1"}}, "bad_field"),
        ({"type": "engagement.customer.erase", "timestamp": T0 + DAY}, "timestamp_in_future"),
        ({"type": "engagement.customer.erase", "customer_id": ""}, "bad_customer_id"),
    ]:
        with pytest.raises(InvalidEvent) as info:
            parse_request(raw(**fields), now_ms=T0)
        assert info.value.reason == reason, fields


def test_lifecycle_event_ids_depend_on_the_request_only() -> None:
    import orjson

    doc = {"event_id": "r1", "customer_id": "c1", "type": "engagement.customer.erase",
           "timestamp": T0}  # fmt: skip
    one = parse_request(orjson.dumps(doc), now_ms=T0)
    two = parse_request(orjson.dumps({**doc, "event_id": "r2"}), now_ms=T0)
    assert one is not None and two is not None
    assert lifecycle_event(one, MODEL) == lifecycle_event(one, MODEL)
    assert lifecycle_event(one, MODEL).event_id != lifecycle_event(two, MODEL).event_id

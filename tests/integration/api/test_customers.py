"""One customer's scores, tier, segments, NPS answer and explanation."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import pytest

from scoring import next_crossing, values_at
from scoring.codec.explain import id_fingerprint
from stream_app.contracts import rfc3339
from tests.integration.api.client import (
    EXPLAIN_EVENTS,
    HOUR_MS,
    Served,
    Spec,
    between,
    expected_states,
    ms_of,
    produce_and_wait,
)
from tests.integration.workers import event, now_ms, unique
from tests.support.diff import close

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- customer


def test_customer_values_now_and_at_clock(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    w, model = s.worker, s.model
    tag = unique("cust")
    a, b = f"{tag}-a", f"{tag}-b"
    t = now_ms()
    docs = [
        event(unique("e"), a, "email_open", t - 30 * HOUR_MS),
        event(unique("e"), a, "webinar_attended", t - 20 * HOUR_MS),
        event(unique("e"), a, "web_visit", t - 10 * HOUR_MS),
        event(unique("e"), a, "social_share", t - 9 * HOUR_MS),
        event(unique("e"), a, "nps_response", t - 5 * HOUR_MS, score=4),  # detractor
        event(unique("e"), a, "email_unsubscribe", t - 4 * HOUR_MS),  # negative points
        event(unique("e"), a, "loyalty_join", t - 60_000),
        event(unique("e"), b, "webinar_attended", t - 3 * HOUR_MS),
        event(unique("e"), b, "webinar_attended", t - 3 * HOUR_MS),  # 20: warm
        event(unique("e"), b, "nps_response", t - 2 * HOUR_MS, score=10),  # advocate
    ]
    produce_and_wait(w, docs)
    expected = expected_states(w, docs)

    for cid in (a, b):
        state = expected[cid].state
        assert state is not None
        before = now_ms()
        body = spec.check("/v1/customers/{customer_id}", s.get(f"/v1/customers/{cid}"))
        after = now_ms()
        at_clock = values_at(state, model, state.clock_ms)
        lo, hi = values_at(state, model, before), values_at(state, model, after)

        assert body["customer_id"] == cid
        assert body["clock"] == rfc3339(state.clock_ms)
        assert close(body["at_clock"]["score"], at_clock.score), (body, at_clock)
        assert body["at_clock"]["dimensions"].keys() == set(model.dimensions)
        for dim in model.dimensions:
            assert close(body["at_clock"]["dimensions"][dim], at_clock.dimensions[dim]), dim
            assert between(body["dimensions"][dim], lo.dimensions[dim], hi.dimensions[dim]), dim
        assert between(body["score"], lo.score, hi.score)
        assert close(body["score"], sum(body["dimensions"].values()))
        assert body["tier"] == state.tier_name(model)
        assert body["segments"] == list(state.segment_names(model))
        assert body["nps"] == {
            "last_score": state.nps_score,
            "category": state.nps_category,
            "answered_at": rfc3339(state.nps_at_ms) if state.nps_at_ms is not None else None,
        }
        assert body["last_event_at"] == rfc3339(
            max(d["timestamp"] for d in docs if d["customer_id"] == cid)
        )
        assert (
            body["events_applied"]
            == state.events_applied
            == Counter(d["customer_id"] for d in docs)[cid]
        )
        crossing = next_crossing(state, model)
        assert crossing is not None  # both decay into a change some day
        assert body["next_crossing"] == rfc3339(crossing)
        assert (body["model"], body["model_version"]) == (model.name, model.version)
        record = w.record(cid)
        assert record is not None and body["version"] == record.version

    # what the crafted events were meant to give
    assert expected[a].state is not None and expected[b].state is not None
    assert expected[a].state.nps_category == "detractor"
    assert expected[b].state.tier_name(model) == "warm"
    assert "advocate" in expected[b].state.segment_names(model)

    # a bad id (a space, as the path encodes it), an over-long one, an unknown one
    for path in ("/v1/customers/bad%20id", f"/v1/customers/{'x' * 129}"):
        reply = s.get(path)
        assert reply.status == 400, path
        assert (
            spec.check("/v1/customers/{customer_id}", reply)["error"]["code"] == "bad_customer_id"
        )
    reply = s.get(f"/v1/customers/{tag}-nobody")
    assert reply.status == 404
    err = spec.check("/v1/customers/{customer_id}", reply)["error"]
    assert err["code"] == "unknown_customer" and f"{tag}-nobody" in err["message"]


def test_customer_ids_that_need_escaping(served: dict[str, Served], spec: Spec) -> None:
    """Ids with characters that are special in URLs or Redis keys round-trip."""
    s = served["api"]
    tag = unique("esc")
    ids = [f"{tag}-{{x}}%25", f"{tag}-é?#&", f"{tag}-[a]:b", f"{tag}-a/b", f"{tag}-a%2Fb"]
    docs = [event(unique("e"), cid, "webinar_attended", now_ms() - 1000) for cid in ids]
    produce_and_wait(s.worker, docs)
    for cid in ids:
        reply = s.get("/v1/customers/" + urllib.parse.quote(cid, safe=""))
        assert reply.status == 200, (cid, reply.body)
        body = spec.check("/v1/customers/{customer_id}", reply)
        assert body["customer_id"] == cid and body["events_applied"] == 1


# --------------------------------------------------------------------------- explain


def test_explain_sums_to_dimensions_and_keeps_the_latest_events(
    served: dict[str, Served], spec: Spec
) -> None:
    s = served["api"]
    w, model = s.worker, s.model
    cid = unique("expl")
    t = now_ms()
    types = [
        ("email_open", 40), ("email_click", 30), ("content_download", 25),
        ("webinar_attended", 20), ("loyalty_join", 10), ("email_unsubscribe", 5),
        ("web_visit", 3), ("review_submitted", 2),
    ]  # fmt: skip
    docs = [event(unique("e"), cid, typ, t - hours * HOUR_MS) for typ, hours in types]
    produce_and_wait(w, docs)
    state = expected_states(w, docs)[cid].state
    assert state is not None

    reply = s.get(f"/v1/customers/{cid}/explain")
    body = spec.check("/v1/customers/{customer_id}/explain", reply)
    at = ms_of(body["at"])
    assert body["customer_id"] == cid
    # each event type maps to one dimension: its types' contributions add up to its value
    assert set(body["by_event_type"]) == {typ for typ, _ in types}
    per_dim: dict[str, float] = Counter()
    for typ, value in body["by_event_type"].items():
        per_dim[model.event_types[typ].dimension] += value
    for dim in model.dimensions:
        assert close(per_dim.get(dim, 0.0), body["by_dimension"][dim]), dim
        # ``at`` is rendered to the millisecond: the value lies within that millisecond
        lo, hi = values_at(state, model, at), values_at(state, model, at + 1)
        assert between(body["by_dimension"][dim], lo.dimensions[dim], hi.dimensions[dim]), dim
    assert close(body["score"], sum(body["by_dimension"].values()))
    magnitudes = [abs(v) for v in body["by_event_type"].values()]
    assert magnitudes == sorted(magnitudes, reverse=True)

    # the latest EXPLAIN_EVENTS events by event time, largest contribution first, each id
    # shown as its fingerprint (the default: ENGAGEMENT_EXPLAIN_FULL_IDS=false)
    recent = body["recent_events"]
    assert len(recent) == EXPLAIN_EVENTS
    newest = sorted(docs, key=lambda d: d["timestamp"], reverse=True)[:EXPLAIN_EVENTS]
    assert {r["event_id"] for r in recent} == {id_fingerprint(d["event_id"]) for d in newest}
    by_id = {id_fingerprint(d["event_id"]): d for d in docs}
    for r in recent:
        doc = by_id[r["event_id"]]
        et = model.event_types[doc["type"]]
        assert (r["type"], r["timestamp_ms"]) == (doc["type"], doc["timestamp"])
        assert r["timestamp"] == rfc3339(doc["timestamp"])
        assert r["points"] == et.points
        half_life = model.half_life_ms(et.dimension)
        decay = (
            0.5 ** ((at - doc["timestamp"]) / half_life),
            0.5 ** ((at + 1 - doc["timestamp"]) / half_life),
        )
        assert between(r["contribution"], et.points * decay[0], et.points * decay[1])
    contributions = [abs(r["contribution"]) for r in recent]
    assert contributions == sorted(contributions, reverse=True)

    for path, status, code in (
        ("/v1/customers/bad%20id/explain", 400, "bad_customer_id"),
        (f"/v1/customers/{cid}-nobody/explain", 404, "unknown_customer"),
    ):
        reply = s.get(path)
        assert reply.status == status, path
        assert spec.check("/v1/customers/{customer_id}/explain", reply)["error"]["code"] == code

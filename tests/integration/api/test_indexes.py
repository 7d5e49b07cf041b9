"""The read indexes: tier counts and moves, segment counts and member pages."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from scoring import decode_state
from stream_app.store.records import decode_record
from tests.integration.api.client import (
    MEMBERS,
    Served,
    Spec,
    expected_states,
    produce_and_wait,
    q,
    settle_decay,
)
from tests.integration.workers import event, now_ms, unique

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- tiers


def tier_table(s: Served, spec: Spec) -> dict[str, dict[str, int]]:
    body = spec.check("/v1/tiers", s.get("/v1/tiers"))
    assert body["model"] == s.model.name
    assert [t["name"] for t in body["tiers"]] == [t.name for t in s.model.tiers]
    assert [t["threshold"] for t in body["tiers"]] == [t.threshold for t in s.model.tiers]
    return {
        t["name"]: {k: v for k, v in t.items() if k not in ("name", "threshold")}
        for t in body["tiers"]
    }


def test_tier_counts_and_moves(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    w, model = s.worker, s.model
    settle_decay(w)  # no customer of an earlier test changes tier under us
    before = tier_table(s, spec)
    tag = unique("tier")
    t = now_ms()
    docs: list[dict[str, Any]] = []
    # webinars at one instant, 10 points each: 1 stays cold, 2 make warm, 6 hot (a hot
    # customer goes through warm: two moves in the last hour)
    plan = {"cold": (3, 1), "warm": (4, 2), "hot": (3, 6)}
    for tier, (customers, webinars) in plan.items():
        for i in range(customers):
            cid = f"{tag}-{tier}-{i}"
            docs += [event(unique("e"), cid, "webinar_attended", t) for _ in range(webinars)]
    produce_and_wait(w, docs)
    folded = expected_states(w, docs)

    finals = Counter(f.state.tier_name(model) for f in folded.values() if f.state is not None)
    assert finals == {"cold": 3, "warm": 4, "hot": 3}
    moves = [c for f in folded.values() for c in f.changes if c.kind == "tier"]
    entered = Counter(c.to_tier for c in moves)
    left = Counter(c.from_tier for c in moves)
    assert entered == {"warm": 7, "hot": 3} and left == {"cold": 7, "warm": 3}
    assert all(c.occurred_at_ms == t for c in moves)

    after = tier_table(s, spec)
    for tier in (x.name for x in model.tiers):
        delta = {k: after[tier][k] - before[tier][k] for k in after[tier]}
        assert delta == {
            "customers": finals[tier],
            "entered_last_hour": entered[tier],
            "entered_last_day": entered[tier],
            "left_last_hour": left[tier],
            "left_last_day": left[tier],
        }, tier
    # the counts are those of the stored records: every customer of this worker
    stored: Counter[str] = Counter()
    for key in w.redis.scan_iter(match=w.keys.state("*"), count=1000):
        raw = w.redis.get(key)
        if raw is not None:
            state = decode_state(decode_record(raw).state or b"", model)
            stored[model.tiers[state.tier].name] += 1
    assert sum(stored.values()) > 0
    for tier in (x.name for x in model.tiers):
        assert after[tier]["customers"] == stored[tier], tier


# --------------------------------------------------------------------------- segments


def segment_counts(s: Served, spec: Spec) -> dict[str, int]:
    body = spec.check("/v1/segments", s.get("/v1/segments"))
    assert body["model"] == s.model.name
    assert [x["name"] for x in body["segments"]] == [r.name for r in s.model.segments]
    return {x["name"]: x["customers"] for x in body["segments"]}


def page(
    s: Served, spec: Spec, name: str, cursor: str | None, limit: int
) -> tuple[list[str], str | None]:
    params: dict[str, object] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    reply = s.get(f"/v1/segments/{name}/members{q(**params)}")
    assert reply.status == 200, reply.body
    body = spec.check(MEMBERS, reply)
    assert body["segment"] == name and len(body["members"]) <= limit
    return body["members"], body["next_cursor"]


def walk(s: Served, spec: Spec, name: str, limit: int) -> list[str]:
    out: list[str] = []
    cursor: str | None = None
    while True:
        members, cursor = page(s, spec, name, cursor, limit)
        out += members
        if cursor is None:
            return out
        assert members and cursor == members[-1]


def test_segment_counts_and_members_pages(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    w, model = s.worker, s.model
    before = segment_counts(s, spec)
    tag = unique("seg")
    t = now_ms()
    docs = [
        event(unique("e"), f"{tag}-p{i}", "nps_response", t - 1000, score=9 + i % 2)
        for i in range(7)
    ]
    docs += [event(unique("e"), f"{tag}-d{i}", "nps_response", t - 1000, score=i) for i in range(2)]
    produce_and_wait(w, docs)
    folded = expected_states(w, docs)
    offline: dict[str, set[str]] = {r.name: set() for r in model.segments}
    for cid, f in folded.items():
        assert f.state is not None
        for name in f.state.segment_names(model):
            offline[name].add(cid)
    assert len(offline["advocate"]) == 7 and len(offline["detractor_at_risk"]) == 2

    after = segment_counts(s, spec)
    assert {k: after[k] - before[k] for k in after} == {k: len(v) for k, v in offline.items()}

    # every page of 2, then all of them at once: the same members, in order, once each
    listed = walk(s, spec, "advocate", limit=2)
    assert len(listed) == len(set(listed)) == after["advocate"]
    assert listed == sorted(listed, key=lambda m: m.encode())
    assert {m for m in listed if m.startswith(tag)} == offline["advocate"]
    assert walk(s, spec, "advocate", limit=1000) == listed
    assert {m for m in walk(s, spec, "detractor_at_risk", 2) if m.startswith(tag)} == offline[
        "detractor_at_risk"
    ]


def test_members_pages_while_members_change(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    w = s.worker
    # our customers share a prefix, so they sort together; the walk starts just before them
    tag = "zz-" + unique("walk")
    t = now_ms()
    initial = [f"{tag}-{i:02d}" for i in range(0, 20, 2)]  # -00, -02, ... -18
    produce_and_wait(
        w, [event(unique("e"), c, "nps_response", t - 5000, score=10) for c in initial]
    )

    def ours(members: list[str]) -> list[str]:
        return [m for m in members if m.startswith(tag)]

    members, cursor = page(s, spec, "advocate", f"{tag}-", 2)  # starts just before ours
    seen = list(members)
    assert seen == initial[:2]
    # between pages: two members leave (one already listed, one not yet), two join (one
    # before the cursor, one after), answering again as detractors / as promoters
    leave = [initial[0], initial[5]]
    join = [f"{tag}-01", f"{tag}-11"]
    changes = [event(unique("e"), c, "nps_response", t - 1000, score=0) for c in leave]
    changes += [event(unique("e"), c, "nps_response", t - 1000, score=9) for c in join]
    produce_and_wait(w, changes)
    states = w.states(leave + join)
    assert all(
        st is not None and "advocate" not in st.segment_names(w.model)
        for st in (states[c] for c in leave)
    )
    assert all(
        st is not None and "advocate" in st.segment_names(w.model)
        for st in (states[c] for c in join)
    )
    while cursor is not None:
        members, cursor = page(s, spec, "advocate", cursor, 2)
        seen += members
        if len(ours(seen)) == 6:  # halfway: one more leaves, one more joins after the cursor
            produce_and_wait(
                w,
                [
                    event(unique("e"), initial[8], "nps_response", t - 500, score=3),
                    event(unique("e"), f"{tag}-19", "nps_response", t - 500, score=10),
                ],
            )
            leave.append(initial[8])
            join.append(f"{tag}-19")
    seen = ours(seen)
    stayed = [c for c in initial if c not in leave]
    assert len(seen) == len(set(seen)), seen  # nothing twice
    assert set(stayed) <= set(seen), sorted(set(stayed) - set(seen))  # nothing skipped
    # paging is by id: those that joined after the cursor are listed, the one that joined
    # behind it is not, and those that left before the cursor reached them are not
    assert f"{tag}-11" in seen and f"{tag}-19" in seen and f"{tag}-01" not in seen
    assert initial[5] not in seen and initial[8] not in seen and initial[0] in seen
    assert seen == sorted(seen)


def test_members_errors(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    reply = s.get("/v1/segments/no_such_segment/members")
    assert reply.status == 404
    assert spec.check(MEMBERS, reply)["error"]["code"] == "unknown_segment"
    for params, code in (
        ({"limit": 0}, "bad_limit"),
        ({"limit": 5000}, "bad_limit"),
        ({"limit": -1}, "bad_limit"),
        ({"limit": "abc"}, "bad_limit"),
        ({"cursor": "bad cursor"}, "bad_cursor"),
        ({"cursor": "x" * 129}, "bad_cursor"),
        ({"cursor": "tab\there"}, "bad_cursor"),
    ):
        reply = s.get(f"/v1/segments/advocate/members{q(**params)}")
        assert reply.status == 400, params
        assert spec.check(MEMBERS, reply)["error"]["code"] == code, params
    for limit in (1, 1000):  # the bounds are allowed
        assert s.get(f"/v1/segments/advocate/members{q(limit=limit)}").status == 200

"""NPS over day windows, overall and by tier."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from scoring import nps
from tests.integration.api.client import API_TOKENS, Reply, Served, Spec, produce_and_wait, q
from tests.integration.workers import dumps, event, unique
from tests.support.fold import fold

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- NPS


def test_nps_windows_and_by_tier(served: dict[str, Served], spec: Spec) -> None:
    s = served["secured"]
    w, model = s.worker, s.model
    token = API_TOKENS[0]
    tag = unique("nps")
    today = datetime.now(tz=UTC).date()
    days = [today - timedelta(days=k) for k in (3, 2, 1)]

    def at(day: date, hour: int) -> int:
        return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)

    def nps_event(cid: str, ts: int, score: int) -> dict[str, Any]:
        return event(unique("e"), cid, "nps_response", ts, score=score)

    def webinars(cid: str, ts: int, n: int) -> list[dict[str, Any]]:
        return [event(unique("e"), cid, "webinar_attended", ts) for _ in range(n)]

    d0, d1, d2 = days
    docs = [
        # day 0: a warm promoter, a cold detractor, and one at 18 points whose answer's own
        # 3 points make it warm: counted as cold
        *webinars(f"{tag}-a", at(d0, 9), 2), nps_event(f"{tag}-a", at(d0, 10), 9),
        nps_event(f"{tag}-b", at(d0, 11), 3),
        *webinars(f"{tag}-f", at(d0, 12), 1),
        event(unique("e"), f"{tag}-f", "survey_completed", at(d0, 12)),
        event(unique("e"), f"{tag}-f", "survey_completed", at(d0, 12)),
        nps_event(f"{tag}-f", at(d0, 12), 10),
        # day 1: a hot passive, a cold passive, and b again: now a cold promoter
        *webinars(f"{tag}-c", at(d1, 8), 6), nps_event(f"{tag}-c", at(d1, 9), 7),
        nps_event(f"{tag}-d", at(d1, 10), 8),
        nps_event(f"{tag}-b", at(d1, 11), 10),
        # day 2: f (warm since its answer) a detractor, a (still warm) a detractor
        nps_event(f"{tag}-f", at(d2, 9), 6),
        nps_event(f"{tag}-a", at(d2, 10), 0),
    ]  # fmt: skip
    produce_and_wait(w, docs)
    # the hand count per (day, tier): promoters, passives, detractors
    hand = {
        (d0, "cold"): (1, 0, 1), (d0, "warm"): (1, 0, 0),
        (d1, "cold"): (1, 1, 0), (d1, "hot"): (0, 1, 0),
        (d2, "warm"): (0, 0, 2),
    }  # fmt: skip
    folded = fold((dumps(d) for d in docs), model)
    core = Counter(
        (date.fromisoformat(day), tier, cat) for f in folded.values() for day, tier, cat in f.nps
    )
    cats = ("promoter", "passive", "detractor")
    assert core == Counter(
        {
            (d, tier, c): n
            for (d, tier), ns in hand.items()
            for c, n in zip(cats, ns, strict=True)
            if n
        }
    )

    def expect(lo: date, hi: date, tier: str | None) -> dict[str, Any]:
        p = pa = de = 0
        for (day, t), (x, y, z) in hand.items():
            if lo <= day <= hi and tier in (None, t):
                p, pa, de = p + x, pa + y, de + z
        n = p + pa + de
        return {
            "nps": nps(p, pa, de),
            "promoters": p,
            "passives": pa,
            "detractors": de,
            "responses": n,
        }

    def get(**params: object) -> Reply:
        return s.get(f"/v1/nps{q(**params)}", token=token)

    windows = [
        (d0, d2),
        (d0, d0),
        (d1, d2),
        (d2, d2),
        (d0, d1),
        (d0 - timedelta(days=40), d0 - timedelta(days=1)),
    ]
    for lo, hi in windows:
        reply = get(**{"from": lo.isoformat(), "to": hi.isoformat(), "by": "tier"})
        body = spec.check("/v1/nps", reply)
        assert (body["from"], body["to"]) == (lo.isoformat(), hi.isoformat())
        assert body["overall"] == expect(lo, hi, None), (lo, hi)
        assert body["by_tier"] == {t.name: expect(lo, hi, t.name) for t in model.tiers}, (lo, hi)
    # all three days: 3 promoters, 2 passives, 3 detractors: NPS 0
    assert expect(d0, d2, None)["nps"] == 0 and expect(d0, d0, None)["nps"] == 33
    # without ``by``: overall only; the default window is the last 30 days, up to today
    body = spec.check("/v1/nps", get(**{"from": d0.isoformat(), "to": d2.isoformat()}))
    assert "by_tier" not in body and body["overall"] == expect(d0, d2, None)
    body = spec.check("/v1/nps", s.get("/v1/nps", token=token))
    server_today = date.fromisoformat(body["to"])  # the UTC day may have turned since
    assert server_today in (today, today + timedelta(days=1))
    assert body["from"] == (server_today - timedelta(days=29)).isoformat()
    assert body["overall"] == expect(d0, d2, None)
    # a window of exactly 366 days is allowed
    assert get(**{"from": "2020-01-01", "to": "2020-12-31"}).status == 200

    for params, code in (
        ({"from": d2.isoformat(), "to": d0.isoformat()}, "bad_window"),  # reversed
        ({"from": "2019-01-01", "to": "2020-01-02"}, "bad_window"),  # 367 days
        ({"from": "2023-02-30"}, "bad_window"),  # not a calendar date
        ({"from": "2023-2-3"}, "bad_window"),
        ({"to": "yesterday"}, "bad_window"),
        ({"from": "20230203"}, "bad_window"),
        ({"by": "segment"}, "bad_by"),
    ):
        reply = get(**params)
        assert reply.status == 400, params
        assert spec.check("/v1/nps", reply)["error"]["code"] == code, params

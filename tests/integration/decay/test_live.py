"""A customer left alone decays through its tiers on time, published within the deadline."""

from __future__ import annotations

import math

import pytest

from tests.integration.decay.helpers import (
    HALF_LIFE_MS,
    MAX_LAG_MS,
    Tail,
    expected_doc,
    label,
    offline,
    wait_published,
)
from tests.integration.workers import Worker, dumps, event, now_ms, unique

pytestmark = pytest.mark.integration


def test_a_hot_customer_left_alone_turns_warm_then_cold_on_time(
    decay_worker: Worker, output: Tail
) -> None:
    """Seven webinars at once (70 points, hot), then nothing: hot -> warm at +1.87 s,
    seen_lately left at +8.64 s, warm -> cold at +9.80 s, content_fan left at +11.1 s,
    each with cause decay at its exact time, published within 2 s of it (caught up)."""
    w, model = decay_worker, decay_worker.model
    cid = unique("cooling")
    t0 = now_ms()
    docs = [event(f"{cid}-{i}", cid, "webinar_attended", t0) for i in range(7)]  # 70: hot
    w.produce_events(docs)
    horizon = t0 + 15_000
    want = offline([dumps(d) for d in docs], model, horizon, at_ms=t0)[cid]

    tiers = [c for c in want if c.kind == "tier"]
    assert [(c.from_tier, c.to_tier, c.cause) for c in tiers] == [
        ("cold", "warm", "event"),
        ("warm", "hot", "event"),
        ("hot", "warm", "decay"),
        ("warm", "cold", "decay"),
    ]
    # the closed form: 70 * 2^(-t / 5 s) reaches 60 * 0.9, then 20 * 0.9
    for change, bound in zip(tiers[2:], (54.0, 18.0), strict=True):
        at = t0 + HALF_LIFE_MS * math.log2(70.0 / bound)
        assert math.isclose(change.occurred_at_ms, at, rel_tol=1e-12, abs_tol=1.0)
        assert math.isclose(change.score, bound, rel_tol=1e-6)

    expected = {expected_doc(c) for c in want}
    decay = [c for c in want if c.cause == "decay"]
    last = max(c.occurred_at_ms for c in decay)
    published = wait_published(w, output, [cid], expected, (last - now_ms()) / 1000.0 + 10.0)
    assert published.docs() == expected, "a change published that one offline pass has not"
    assert not published.ids_with_two_contents()
    lags = {label(c): published.received(expected_doc(c)) - c.occurred_at_ms for c in decay}
    print(f"decay firing lag (receive time - crossing time), ms: {lags}")
    assert all(lag < MAX_LAG_MS for lag in lags.values()), lags
    assert all(lag >= 0 for lag in lags.values()), f"published before its crossing: {lags}"

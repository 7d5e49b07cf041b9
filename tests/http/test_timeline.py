"""A customer's score over time (``stream_app.http.timeline``) is exact: at every instant it shows,
it equals the values of the state the events up to that instant make (the pure core's
``apply`` and ``values_at``), wherever the explanation keeps the events that followed.

No services: states and explanations are built by the pure core, as the worker builds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from scoring import (
    CustomerState,
    Event,
    Explanation,
    Model,
    advance,
    apply,
    explain_add,
    load_default_model,
    values_at,
)
from stream_app.http.api import ApiError, samples_param
from stream_app.http.timeline import DEFAULT_SAMPLES, MAX_SAMPLES, timeline

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_700_000_000_000
CID = "cust-1"


@pytest.fixture(scope="module")
def model() -> Model:
    return load_default_model()


def ev(n: int, type_: str, ts: int) -> Event:
    return Event(f"e{n}", CID, type_, ts, None)


def fold(
    events: Sequence[Event], model: Model, keep: int
) -> tuple[CustomerState, Explanation | None]:
    """State and explanation after ``events`` in this order, as the worker keeps them."""
    state: CustomerState | None = None
    expl: Explanation | None = None
    for e in events:
        result = apply(state, e, model)
        state = result.state
        if result.status != "duplicate" and keep:
            points = model.event_types[e.type].points if result.status == "applied" else 0.0
            expl = explain_add(expl, e, points, model, keep=keep)
    assert state is not None
    return state, expl


def truth(
    events: Sequence[Event], model: Model, t: float, *, before: bool
) -> dict[str, float] | None:
    """Dimension values at ``t`` of the events up to ``t`` (before: strictly before)."""
    seen = [e for e in events if e.ts_ms < t or (e.ts_ms == t and not before)]
    if not seen:
        return None
    state, _ = fold(seen, model, keep=0)
    return dict(values_at(state, model, t).dimensions)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def check_exact(body: dict[str, object], events: Sequence[Event], model: Model) -> int:
    """Every point of ``body`` against the replayed truth; returns how many were checked."""
    series = body["series"]
    assert isinstance(series, dict)
    times, scores, dims = series["t_ms"], series["score"], series["dimensions"]
    assert len(times) == len(scores) and all(len(v) == len(times) for v in dims.values())
    assert times == sorted(times)
    event_times = {e.ts_ms for e in events}
    checked = 0
    for k, t in enumerate(times):
        # at an event's time the series holds the value before it, then at it
        before = t in event_times and (k + 1 < len(times) and times[k + 1] == t)
        expected = truth(events, model, t, before=before)
        if expected is None:  # before the first event: nothing yet
            assert all(close(v[k], 0.0) for v in dims.values()) and close(scores[k], 0.0)
            continue
        for d in model.dimensions:
            assert close(dims[d][k], expected[d]), (t, d, dims[d][k], expected[d])
        assert close(scores[k], math.fsum(expected.values())), t
        checked += 1
    return checked


def mixed_history() -> list[Event]:
    """Four dimensions, negative points, two events at one instant, in time order."""
    return [
        ev(1, "webinar_attended", T0),
        ev(2, "email_open", T0 + 5 * HOUR),
        ev(3, "loyalty_join", T0 + 2 * DAY),
        ev(4, "email_unsubscribe", T0 + 3 * DAY),  # negative points
        ev(5, "web_visit", T0 + 3 * DAY),  # same instant
        ev(6, "social_share", T0 + 9 * DAY),
        ev(7, "content_download", T0 + 20 * DAY),
        ev(8, "email_click", T0 + 21 * DAY + 7),
    ]


def test_every_event_kept_gives_the_whole_history_exactly(model: Model) -> None:
    events = mixed_history()
    state, expl = fold(events, model, keep=10)
    now = T0 + 40 * DAY
    body = timeline(CID, state, expl, model, now_ms=now, samples=50)
    assert body["complete"] is True
    assert body["from"] == "2023-11-14T22:13:20.000Z"  # the first event
    assert [e["event_id"] for e in body["events"]] == [e.event_id for e in events]
    instants = {e.ts_ms for e in events}  # two events share one
    assert len(body["series"]["t_ms"]) == 50 + 2 * len(instants) - 1  # the first: on the grid
    assert check_exact(body, events, model) >= 50
    # the last point is "now", as the API's customer view decays it
    final = values_at(state, model, now)
    assert body["series"]["t_ms"][-1] == now and close(body["series"]["score"][-1], final.score)


def test_a_short_explanation_is_exact_from_its_oldest_event(model: Model) -> None:
    events = mixed_history()
    state, expl = fold(events, model, keep=3)
    body = timeline(CID, state, expl, model, now_ms=T0 + 30 * DAY, samples=120)
    assert body["complete"] is False
    assert [e["event_id"] for e in body["events"]] == ["e6", "e7", "e8"]
    assert body["series"]["t_ms"][0] == events[5].ts_ms  # exact from the oldest kept one
    assert check_exact(body, events, model) >= 120


def test_late_events_and_a_clock_moved_by_decay(model: Model) -> None:
    arrival = [
        ev(1, "webinar_attended", T0),
        ev(2, "webinar_attended", T0 + DAY),
        ev(3, "loyalty_join", T0 + 4 * DAY),
        ev(4, "email_open", T0 + 2 * DAY),  # late: older than the customer's clock
        ev(5, "review_submitted", T0 + 3 * DAY),  # late too
    ]
    state, expl = fold(arrival, model, keep=10)
    state, changes = advance(state, CID, T0 + 60 * DAY, model)  # the decay sweep's work
    assert changes and state.clock_ms > T0 + 4 * DAY
    body = timeline(CID, state, expl, model, now_ms=T0 + 61 * DAY, samples=80)
    in_time = sorted(arrival, key=lambda e: e.ts_ms)
    assert [e["event_id"] for e in body["events"]] == [e.event_id for e in in_time]
    assert check_exact(body, in_time, model) >= 80


def test_capped_events_are_shown_with_no_points(model: Model) -> None:
    cap = model.event_types["email_open"].max_per_day
    assert cap is not None
    events = [ev(k, "email_open", T0 + k * 60_000) for k in range(cap + 2)]
    state, expl = fold(events, model, keep=20)
    body = timeline(CID, state, expl, model, now_ms=T0 + HOUR, samples=30)
    assert [e["points"] for e in body["events"]][cap:] == [0.0, 0.0]
    assert check_exact(body, events, model) >= 30


def test_without_an_explanation_the_curve_starts_at_the_last_event(model: Model) -> None:
    events = mixed_history()
    state, _ = fold(events, model, keep=0)
    body = timeline(CID, state, None, model, now_ms=T0 + 30 * DAY, samples=20)
    assert body["events"] == [] and body["complete"] is False
    assert body["series"]["t_ms"][0] == events[-1].ts_ms
    assert check_exact(body, events, model) == 20


def test_tiers_carry_their_thresholds_and_the_hysteresis_bound(model: Model) -> None:
    state, expl = fold(mixed_history(), model, keep=10)
    body = timeline(CID, state, expl, model, now_ms=T0 + 30 * DAY)
    assert [(t["name"], t["threshold"]) for t in body["tiers"]] == [
        (t.name, t.threshold) for t in model.tiers
    ]
    warm = body["tiers"][1]
    assert close(warm["leave_below"], warm["threshold"] * (1 - model.hysteresis))
    instants = {e.ts_ms for e in mixed_history()}
    grid_hits = 1  # the grid starts at the first event; "now" is after the last
    assert len(body["series"]["score"]) == DEFAULT_SAMPLES + 2 * len(instants) - grid_hits


@pytest.mark.parametrize(
    ("text", "ok"),
    [(None, True), ("", True), ("2", True), (str(MAX_SAMPLES), True), ("1", False),
     ("0", False), ("-5", False), (str(MAX_SAMPLES + 1), False), ("ten", False), ("2.5", False)],
)  # fmt: skip
def test_samples_parameter(text: str | None, ok: bool) -> None:
    query = {} if text is None else {"samples": text}
    if ok:
        assert samples_param(query) == int(text or DEFAULT_SAMPLES)
    else:
        with pytest.raises(ApiError) as raised:
            samples_param(query)
        status, body = raised.value.answer
        assert status == 400 and body["error"]["code"] == "bad_samples"

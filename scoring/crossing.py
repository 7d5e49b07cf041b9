"""Decay crossings: the moments a tier or a segment changes with no new event.

Between events a customer's metrics are known functions of time: the score and each
dimension are sums of exponentials, ``days_since.*`` grows linearly, the NPS
category is constant (:mod:`scoring.metrics`). Every bound a rule compares them with
(the tier's up and down bounds, each segment condition's value) gives a function
``metric - bound`` whose right-limit sign changes its metric finds exactly (for sums
of exponentials with :class:`scoring.roots.SignStream`). The candidate times of all
of them are taken in order and the first at which the tier would move (up: score >=
next threshold; down: score < threshold * (1 - hysteresis)) or a segment's truth
differs from the stored one is the next crossing.

Truth at a crossing is the right-limit truth: what holds just *after* it. A metric
that only touches a bound crosses nothing; one that reaches it and turns back is
seen for what it does next.

The search is lazy but exact (see :mod:`scoring.watch` and :mod:`scoring.track`): a
sign change is first known as a bracket, and a bracket is only shrunk (by the very
steps that would pin it down to adjacent floats) as far as needed to order it against
the others; only the change that moves the tier or a segment is refined to the end.
Bounds out of the values' reach, conditions of a rule already decided for good and
metrics shown to stay on their side until another change is due are never searched.
The times found are the ones an eager search over every bound finds, bit for bit.

A continuous crossing moves the tier one step. :func:`advance` applies crossings in
time order, each at its exact time, and never moves the clock past the last one.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from scoring.changes import Change, diff
from scoring.errors import ScoringError
from scoring.metrics import SCORE, Check
from scoring.model import Model
from scoring.rules import fold
from scoring.state import CustomerState, decayed_values, timeline
from scoring.track import Track
from scoring.watch import Watch

__all__ = ["Crossing", "advance", "find_crossing", "next_crossing", "quiet_until"]

#: More crossings than this between two calls means a bug, not a customer.
_MAX_CROSSINGS = 10_000
_INF = math.inf


@dataclass(frozen=True, slots=True)
class Crossing:
    """The next crossing: its time and the tier and segment mask just after it."""

    at_ms: float
    tier: int
    segments: int


def next_crossing(state: CustomerState, model: Model) -> float | None:
    """The earliest time ``>= state.clock_ms`` at which, without new events, the tier
    or a segment changes; None if that never happens."""
    crossing = find_crossing(state, model)
    return None if crossing is None else crossing.at_ms


def quiet_until(state: CustomerState, model: Model, until_ms: float) -> bool:
    """True if, without new events, surely no crossing comes at or before ``until_ms``.

    A cheap test (no root search; see :func:`_quiet`), so False may only mean "not
    sure". When True, :func:`next_crossing` is later than ``until_ms``, so any time up
    to ``until_ms`` is a lower bound of it.

    >>> from scoring.apply import apply
    >>> from scoring.events import Event
    >>> from scoring.model import load_default_model
    >>> model, day = load_default_model(), 86_400_000
    >>> state = None
    >>> for n, (kind, at) in enumerate([("webinar_attended", 0), ("webinar_attended", day),
    ...                                 ("review_submitted", day)]):
    ...     state = apply(state, Event(f"e{n}", "c-1", kind, at), model).state
    >>> t = next_crossing(state, model)           # 14 quiet days: the "lapsing" segment
    >>> (t - day) / day, quiet_until(state, model, t - 1), quiet_until(state, model, t)
    (14.0, True, False)
    """
    if state.is_new or until_ms < state.clock_ms:
        return False
    return _quiet(state, model, until_ms)


def find_crossing(state: CustomerState, model: Model) -> Crossing | None:
    """Like :func:`next_crossing`, with the tier and segments just after the crossing."""
    return _first(state, model, _INF)


def advance(
    state: CustomerState, customer_id: str, until_ms: float, model: Model
) -> tuple[CustomerState, tuple[Change, ...]]:
    """Apply every crossing at or before ``until_ms``, each at its exact time.

    The clock moves to each crossing applied and no further; the changes have cause
    ``decay``. Pure: the same state and ``until_ms`` always give the same result.
    """
    changes: list[Change] = []
    for _ in range(_MAX_CROSSINGS):
        crossing = _first(state, model, until_ms)
        if crossing is None:
            return state, tuple(changes)
        values = decayed_values(state, model, crossing.at_ms)
        changes.extend(
            diff(
                model,
                customer_id,
                tier_before=state.tier,
                tier_after=crossing.tier,
                segments_before=state.segments,
                segments_after=crossing.segments,
                occurred_at_ms=crossing.at_ms,
                values=values,
                score=math.fsum(values),
                cause="decay",
                cause_event_id=None,
            )
        )
        state = CustomerState(
            crossing.at_ms, values, crossing.tier, crossing.segments, state.last_seen,
            state.nps_score, state.nps_at_ms, state.caps, state.recent_ids,
            state.events_applied, state.last_event_ms,
        )  # fmt: skip
    raise ScoringError(f"advance: more than {_MAX_CROSSINGS} crossings for {customer_id!r}")


def _first(state: CustomerState, model: Model, until: float) -> Crossing | None:
    """The first crossing, or None if there is none at or before ``until``."""
    if state.is_new or state.clock_ms > until:
        return None
    if until != _INF and _quiet(state, model, until):
        return None
    watch = Watch(state, model)
    tier, mask = watch.outcome()
    if tier != state.tier or mask != state.segments:
        return Crossing(state.clock_ms, tier, mask)
    return _search(watch, until)


def _search(watch: Watch, until: float) -> Crossing | None:
    """Pass the tracks' changes in time order until the tier or a segment moves.

    ``first`` is the track whose next change may come earliest. Without a bracket
    it is searched (unless it surely stays put until another change is due). With
    one, its rivals are the tracks whose change may come no later: its bracket is
    shrunk until they are out of it, or, once it is exact, theirs, until none is
    left but those changing at the very same time; then all of them change.
    """
    state = watch.state
    active = watch.active()
    while active:
        first = min(active, key=_order)
        if first.lo >= until:  # every change left comes after ``until``
            return None
        rest = [t for t in active if t is not first]
        rivals = [t for t in rest if t.lo < first.hi]
        if first.hi == _INF:
            stale = _bracket(first, rest, until)
        elif rivals and not first.exact:
            first.narrow(min(t.lo for t in rivals))
            stale = False
        elif unsure := [t for t in rivals if not t.exact]:
            stale = _clear(min(unsure, key=_order), first.hi)
        else:
            roots = [t.take() for t in (first, *rivals)]
            tier, mask = watch.outcome()
            if tier != state.tier or mask != state.segments:
                at = roots[0].refine()
                return None if at > until else Crossing(at, tier, mask)
            stale = True
        if stale:
            active = watch.active()
    return None


def _bracket(track: Track, rest: list[Track], until: float) -> bool:
    """Search ``track`` while it may change first; True once it has no change left."""
    target = min([t.hi for t in rest if t.hi < until], default=until)
    if target != _INF and track.fresh and track.tried != target:
        track.tried = target  # (once per target)
        if track.quiet(target):  # it stays put until another change is due
            track.lo = target
            return False
    others = min([t.lo for t in rest], default=_INF)
    while track.hi == _INF and track.lo <= others and track.lo < until:
        track.search()
    return track.lo == _INF


def _clear(rival: Track, at: float) -> bool:
    """Show ``rival`` changes after ``at``, or narrow it; True once it has no change left."""
    if rival.hi == _INF and rival.fresh and rival.quiet(at):
        rival.lo = at
        return False
    rival.search()
    return rival.lo == _INF


#: Earliest possible change first; on a tie the first in :meth:`Watch.active` order,
#: the cheapest to search.
_order = operator.attrgetter("lo")


def _quiet(state: CustomerState, model: Model, until: float) -> bool:
    """True if surely nothing changes in ``[clock, until]``: a shortcut of :func:`_first`.

    Each bound is checked with its metric's :meth:`~scoring.metrics.Metric.side`
    between the clock and ``until``, without building tracks (the score only as a
    monotone metric when its values share a sign); then the tier and the segments
    those sides give must be the stored ones.
    """
    values = state.dimension_values(model)
    if not all(map(math.isfinite, values)):  # (the search raises)
        return False
    line, bounds = timeline(state, model, values), model.plan.tiers
    up, down = bounds.up[state.tier], bounds.down[state.tier]
    if (up is not None and SCORE.side(line, -1, up, until) != -1) or (
        down is not None and SCORE.side(line, -1, down, until) != 1
    ):
        return False

    def truth(check: Check) -> bool | None:
        return check.metric.truth_until(line, check, until)

    return fold(model.plan.rules, truth) == state.segments

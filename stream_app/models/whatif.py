"""The what-if of a model change, computed offline through the pure scoring core.

:class:`Replay` folds the retained input, message by message, under the model in force
and under the new one (no writes, no output). :func:`summarize` then puts each
customer's standing in force (its stored state when it has one, else the replay's)
next to its standing under the new model (the replay's, or the stored state derived
with :func:`scoring.migrate.derive` for a change that needs no replay) and counts what
a promotion would do: tiers old -> new, segment sizes, the model changes it would
publish (:func:`scoring.migrate.switch_changes`), a few examples explained, and how
much history the retained input covers.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scoring import (
    CustomerState,
    Event,
    Explanation,
    InvalidEvent,
    Model,
    advance,
    apply,
    contributions_at,
    decode_explanation,
    explain_add,
    parse_event,
    values_at,
)
from scoring.migrate import Comparison, derive, standing, switch_changes

#: How many customers' events are kept for the examples (the smallest id digests).
SAMPLE = 64


def _digest(customer_id: str) -> bytes:
    return hashlib.blake2b(customer_id.encode(), digest_size=8).digest()


class Replay:
    """Both models' states of every customer in the retained input, folded as it is read."""

    def __init__(
        self, old: Model, new: Model | None, *, now_ms: float, max_future_ms: int, dedup: int
    ) -> None:
        self.old, self.new = old, new
        self.now_ms, self.max_future_ms, self.dedup = now_ms, max_future_ms, dedup
        self.same_types = new is not None and set(old.event_types) == set(new.event_types)
        self.old_states: dict[str, CustomerState] = {}
        self.new_states: dict[str, CustomerState] = {}
        self.seen: Counter[str] = Counter()  # events valid under the model in force
        self.messages = 0
        self.valid_old = 0
        self.valid_new = 0
        self.earliest_event_ms: int | None = None
        self.earliest_message_ms: int | None = None
        self._sample: list[tuple[bytes, str]] = []  # a max-heap by digest (negated bytes)
        self.sampled: dict[str, list[Event]] = {}

    def _parse(self, raw: bytes, model: Model) -> Event | None:
        try:
            return parse_event(
                raw, model, now_ms=int(self.now_ms), max_future_ms=self.max_future_ms
            )
        except InvalidEvent:
            return None

    def add(self, raw: bytes | None, timestamp_ms: int | None) -> None:
        """Fold one retained message (a message neither model can score is skipped)."""
        self.messages += 1
        if timestamp_ms is not None and (
            self.earliest_message_ms is None or timestamp_ms < self.earliest_message_ms
        ):
            self.earliest_message_ms = timestamp_ms
        if raw is None:
            return
        old_event = self._parse(raw, self.old)
        new_event = None
        if self.new is not None:
            new_event = old_event if self.same_types else self._parse(raw, self.new)
        for ev, model, states in (
            (old_event, self.old, self.old_states),
            (new_event, self.new, self.new_states),
        ):
            if ev is None or model is None:
                continue
            cid = ev.customer_id
            states[cid] = apply(states.get(cid), ev, model, dedup_memory=self.dedup).state
            if self.earliest_event_ms is None or ev.ts_ms < self.earliest_event_ms:
                self.earliest_event_ms = ev.ts_ms
        if old_event is not None:
            self.valid_old += 1
            self.seen[old_event.customer_id] += 1
        if new_event is not None:
            self.valid_new += 1
        event = old_event or new_event
        if event is not None:
            self._keep(event)

    def _keep(self, event: Event) -> None:
        """Keep the events of the :data:`SAMPLE` customers with the smallest id digests."""
        cid = event.customer_id
        if cid in self.sampled:
            self.sampled[cid].append(event)
            return
        key = _digest(cid)
        if len(self._sample) < SAMPLE:
            heapq.heappush(self._sample, (bytes(255 - b for b in key), cid))
            self.sampled[cid] = [event]
        elif bytes(255 - b for b in key) > self._sample[0][0]:
            _, dropped = heapq.heapreplace(self._sample, (bytes(255 - b for b in key), cid))
            del self.sampled[dropped]
            self.sampled[cid] = [event]


@dataclass(frozen=True, slots=True)
class Side:
    """One customer under one model, at the plan's time."""

    tier: str
    segments: tuple[str, ...]
    score: float
    by_event_type: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Example:
    customer_id: str
    old: Side
    new: Side
    changes: tuple[str, ...]


@dataclass
class WhatIf:
    """The report of ``engagement-scorer model plan``."""

    old: str
    new: str
    mode: str
    comparison: Comparison
    now_ms: float
    messages: int = 0
    valid_old: int = 0
    valid_new: int = 0
    customers: int = 0
    old_tiers: tuple[str, ...] = ()
    new_tiers: tuple[str, ...] = ()
    matrix: Counter[tuple[str, str]] = field(default_factory=Counter)
    segments: dict[str, tuple[int, int]] = field(default_factory=dict)
    changes: Counter[str] = field(default_factory=Counter)
    customers_changed: int = 0
    examples: list[Example] = field(default_factory=list)
    earliest_event_ms: int | None = None
    earliest_message_ms: int | None = None
    stored: int = 0
    older_history: list[str] = field(default_factory=list)
    not_in_input: list[str] = field(default_factory=list)

    @property
    def total_changes(self) -> int:
        return sum(self.changes.values())


def _side(
    state: CustomerState | None, model: Model, expl: Explanation | None, now_ms: float
) -> Side:
    st = standing(state, model)
    score = 0.0 if state is None or state.is_new else values_at(state, model, now_ms).score
    by_type = {} if expl is None else contributions_at(expl, model, now_ms)
    top = dict(sorted(by_type.items(), key=lambda kv: -abs(kv[1]))[:5])
    return Side(st.tier_name, st.segments, score, top)


def _explain(events: Iterable[Event], model: Model, dedup: int) -> Explanation | None:
    state: CustomerState | None = None
    expl: Explanation | None = None
    for ev in events:
        if ev.type not in model.event_types:
            continue
        result = apply(state, ev, model, dedup_memory=dedup)
        if result.status != "duplicate":
            points = model.event_types[ev.type].points if result.status == "applied" else 0.0
            expl = explain_add(expl, ev, points, model, keep=5)
        state = result.state
    return expl


def summarize(
    report: WhatIf,
    replay: Replay,
    stored: Mapping[str, CustomerState],
    stored_explanations: Mapping[str, bytes],
    *,
    old: Model,
    new: Model,
    examples: int = 3,
) -> WhatIf:
    """Fill ``report`` from the replay and the stored states of the model in force."""
    now = report.now_ms
    derived = report.mode == "from-current"
    report.messages, report.valid_old, report.valid_new = (
        replay.messages,
        replay.valid_old,
        replay.valid_new,
    )
    report.old_tiers, report.new_tiers = old.tier_names, new.tier_names
    old_sizes: Counter[str] = Counter()
    new_sizes: Counter[str] = Counter()
    moved: dict[str, tuple[str, ...]] = {}
    customers = set(replay.old_states) | set(replay.new_states) | set(stored)
    for cid in sorted(customers):
        before = stored.get(cid)
        if before is None and (offline := replay.old_states.get(cid)) is not None:
            before = advance(offline, cid, now, old)[0]
        if derived:
            after = None if before is None else derive(before, old, new)
        elif (offline_new := replay.new_states.get(cid)) is not None:
            after = advance(offline_new, cid, now, new)[0]
        else:
            after = None
        b, a = standing(before, old), standing(after, new)
        report.matrix[b.tier_name, a.tier_name] += 1
        old_sizes.update(b.segments)
        new_sizes.update(a.segments)
        changes = switch_changes(
            cid, old_state=before, old_model=old, new_state=after, new_model=new, at_ms=now
        )
        report.changes.update(c.cloudevent_type for c in changes)
        if changes:
            report.customers_changed += 1
        if cid in replay.sampled:
            moved[cid] = tuple(_move(c.kind, c.name, c.from_tier, c.to_tier, c.entered)
                               for c in changes)  # fmt: skip
    report.customers = len(customers)
    names = list(old.segment_names) + [n for n in new.segment_names if n not in old.segment_names]
    report.segments = {n: (old_sizes[n], new_sizes[n]) for n in names}
    report.earliest_event_ms = replay.earliest_event_ms
    report.earliest_message_ms = replay.earliest_message_ms
    report.stored = len(stored)
    report.older_history = sorted(
        c for c, s in stored.items() if 0 < replay.seen[c] < s.events_applied
    )
    report.not_in_input = sorted(c for c in stored if replay.seen[c] == 0)
    dedup = replay.dedup
    picks = sorted(moved, key=lambda c: (not moved[c], _digest(c)))[:examples]
    for cid in picks:
        events = replay.sampled[cid]
        raw = stored_explanations.get(cid)
        old_expl = decode_explanation(raw, old) if raw is not None else _explain(events, old, dedup)
        new_expl = old_expl if derived else _explain(events, new, dedup)
        before = stored.get(cid) or _refold(events, old, now, dedup)
        if derived:
            after = None if before is None else derive(before, old, new)
        else:
            after = _refold(events, new, now, dedup)
        sides = _side(before, old, old_expl, now), _side(after, new, new_expl, now)
        report.examples.append(Example(cid, *sides, moved[cid]))
    return report


def _refold(
    events: Iterable[Event], model: Model, now_ms: float, dedup: int
) -> CustomerState | None:
    state: CustomerState | None = None
    cid = ""
    for ev in events:
        if ev.type in model.event_types:
            state, cid = apply(state, ev, model, dedup_memory=dedup).state, ev.customer_id
    return None if state is None else advance(state, cid, now_ms, model)[0]


def _move(kind: str, name: str, frm: str | None, to: str | None, entered: bool) -> str:
    if kind == "tier":
        return f"tier {frm} -> {to}"
    return f"{'enters' if entered else 'leaves'} {name}"

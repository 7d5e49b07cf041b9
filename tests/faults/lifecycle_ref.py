"""The offline reference of the lifecycle scenario: the log, phase by phase, through the pure
core with erase and merge requests as the worker carries them out.

Within a phase, messages are folded partition by partition, then offset (the order a worker
meets them on each partition); an erase removes its customer there, and later events of it
are dropped (suppressed); a merge publishes the merged-away customer's exits and the
announcement there, and its hand-over, with the merged-away customer's later events, is
applied to the survivor (along the chain of aliases) at the end of the phase. The scenario
makes that order the only one possible: a phase starts once the one before is applied, and
no survivor has events of its own in a phase where something is merged into it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from scoring import CustomerState, Event, InvalidEvent, Model, parse_event
from scoring.lifecycle import Request, lifecycle_event, parse_request
from scoring.merge import departure, merge
from stream_app.contracts import cloudevent, lifecycle_cloudevent
from stream_app.messages import expected_partition
from stream_app.store.records import nps_fields
from tests.faults.reference import Reference
from tests.faults.workload import raw_of
from tests.support.fold import Folded, OfflineFold, canonical
from tests.support.kafka import Message


@dataclass
class Lifecycle:
    """What the requests of a log did: who was erased, who was merged into whom."""

    erased: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)  # merged away -> survivor
    suppressed: int = 0  # events dropped as an erased customer's
    aliased: int = 0  # events sent on to a survivor
    published: int = 0  # announcements and merged-away customers' exits


class LifecycleFold:
    """An :class:`OfflineFold` that also carries out erase and merge requests."""

    def __init__(self, model: Model, *, dedup_memory: int, max_future_ms: int) -> None:
        self.model = model
        self.max_future_ms = max_future_ms
        self.offline = OfflineFold(model, dedup_memory=dedup_memory, max_future_ms=max_future_ms)
        self.facts = Lifecycle()
        self.gone: list[Folded] = []  # customers erased or merged away (changes, NPS kept)
        self.published: dict[str, bytes] = {}  # announcements and exits: id -> canonical
        self.pending: list[tuple[str, Event | tuple[CustomerState, str]]] = []

    def add(self, raw: bytes) -> Event | Request | InvalidEvent:
        """One message in its partition's order."""
        now = self.offline.now_ms
        try:
            request = parse_request(raw, now_ms=now, max_future_ms=self.max_future_ms)
        except InvalidEvent as exc:
            return exc
        if request is not None:
            self._request(request)
            return request
        try:
            event = parse_event(raw, self.model, now_ms=now, max_future_ms=self.max_future_ms)
        except InvalidEvent as exc:
            return exc
        cid = event.customer_id
        if cid in self.facts.erased:
            self.facts.suppressed += 1
        elif cid in self.facts.aliases:
            self.facts.aliased += 1
            self.pending.append((self.facts.aliases[cid], event))
        else:
            self.offline.apply(event)
        return event

    def _request(self, r: Request) -> None:
        ann = lifecycle_event(r, self.model)
        self.published[ann.event_id] = canonical(lifecycle_cloudevent(ann))
        f = self.offline.customers.pop(r.customer_id, None)
        if f is not None:
            self.gone.append(f)
        if r.kind == "erase":
            self.facts.erased.add(r.customer_id)
            return
        assert r.into is not None
        self.facts.aliases[r.customer_id] = r.into
        if f is None or f.state is None:
            return
        exits = departure(f.state, self.model, customer_id=r.customer_id, request_id=r.request_id)
        for c in exits:
            self.published[c.change_id] = canonical(cloudevent(c))
        self.pending.append((r.into, (f.state, r.request_id)))  # (before its later events)

    def end_phase(self) -> None:
        """The hand-overs and alias forwards of the phase reach their survivors, in order."""
        for target, item in self.pending:
            into = target
            while into in self.facts.aliases:
                into = self.facts.aliases[into]
            if isinstance(item, Event):
                self.offline.apply(dataclasses.replace(item, customer_id=into))
                continue
            f = self.offline.customers.setdefault(into, Folded())
            source, request_id = item
            merged = merge(f.state, source, self.model, customer_id=into, request_id=request_id)
            f.state = merged.state
            f.changes.extend(merged.changes)
        self.pending = []


def build_lifecycle_reference(
    phases: Sequence[Sequence[Message]],
    model: Model,
    *,
    dedup_memory: int,
    max_future_ms: int,
    partitions: int,
    incarnation: int = 0,
) -> tuple[Reference, Lifecycle]:
    """The reference (as :func:`tests.faults.reference.build_reference` gives one) of one
    broker incarnation's log cut into phases, and what its requests did."""
    fold = LifecycleFold(model, dedup_memory=dedup_memory, max_future_ms=max_future_ms)
    dead: dict[tuple[int, int, int], tuple[str, bytes]] = {}
    valid = forwarded = 0
    for messages in phases:
        for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
            raw = raw_of(m.value)
            got = fold.add(raw)
            if isinstance(got, InvalidEvent):
                dead[(incarnation, m.partition, m.offset)] = (got.reason, raw)
                continue
            valid += 1
            if m.partition != expected_partition(got.customer_id, partitions):
                forwarded += 1
        fold.end_phase()
    changes: dict[str, bytes] = dict(fold.published)
    fold.facts.published = len(fold.published)
    collisions: set[str] = set()
    for f in [*fold.offline.customers.values(), *fold.gone]:
        for c in f.changes:
            body = canonical(cloudevent(c))
            if changes.setdefault(c.change_id, body) != body:
                collisions.add(c.change_id)
    counts: Counter[str] = Counter()
    for f in [*fold.offline.customers.values(), *fold.gone]:  # erased ones' NPS stays counted
        for day, tier, category in f.nps:
            counts.update(nps_fields(day, tier, category))
    states = {c: f.state for c, f in fold.offline.customers.items() if f.state is not None}
    return Reference(states, changes, collisions, counts, dead, valid, forwarded), fold.facts

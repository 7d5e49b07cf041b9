"""Helpers shared by the scale-out tests (Redis Cluster, several workers in one group).

The worker subprocess, producing and the offline fold come from :mod:`workers`; this adds
what those tests need on top: a reproducible multi-customer workload, Redis reads that work
on a plain Redis *and* on a Redis Cluster (pipelines of single-key commands, never a
cross-slot ``MGET``), state comparison tolerant of decay crossings fired by the sweep, and
the partition assignment each worker logged.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from scoring import CustomerState, Model, advance, decode_state, values_at
from stream_app.store.keys import Keys
from stream_app.store.records import CustomerRecord, decode_record
from tests.integration.workers import Folded, Sent, event

SyncClient = redis.Redis | redis.cluster.RedisCluster

#: Customer ids that need escaping in keys: braces would otherwise change the hash tag.
AWKWARD_IDS = ("acme{eu}-1", "x}y{z", "50%off", "{}", "ünïcode-客户")


def workload(
    *,
    seed: int,
    customers: int,
    events: int,
    end_ms: int,
    span_ms: int = 20 * 60_000,
    heavy: int = 0,
) -> list[dict[str, Any]]:
    """``events`` interaction events over ``customers`` customers, in time order, ending at
    ``end_ms``: every event type of the default model, NPS answers (0-10), a few
    redelivered duplicates, and a few customer ids with ``{``, ``}`` or ``%``. With
    ``heavy``, a quarter of the events go to that many customers as bursts of the capped
    types (``email_open``, ``contest_entry``, ``web_visit``), so daily caps bite and the
    order of a customer's events matters.

    The span is short (minutes) so no decay crossing comes due between two events of a
    customer while the workload is produced: a sweep that ran ahead of a later event would
    make the stored state depend on timing, not only on the events.
    """
    rng = random.Random(seed)
    ids = [f"cust-{i:04d}" for i in range(customers - len(AWKWARD_IDS))] + list(AWKWARD_IDS)
    types = [
        "email_open", "email_click", "email_unsubscribe", "content_download", "webinar_attended",
        "loyalty_join", "loyalty_earn", "loyalty_redeem", "survey_completed", "review_submitted",
        "contest_entry", "web_visit", "social_share",
    ]  # fmt: skip
    capped = ["email_open", "contest_entry", "web_visit"]
    times = sorted(rng.randrange(end_ms - span_ms, end_ms) for _ in range(events))
    docs: list[dict[str, Any]] = []
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for i, ts in enumerate(times):
        cid = ids[i] if i < len(ids) else rng.choice(ids)  # every customer at least once
        earlier = by_customer.get(cid, [])
        if i >= len(ids) and heavy and rng.random() < 0.25:
            cid = ids[rng.randrange(heavy)]
            doc = event(f"e{seed}-{i}", cid, rng.choice(capped), ts)
        elif earlier and rng.random() < 0.03:  # a redelivered duplicate (same id, same body)
            doc = dict(rng.choice(earlier))
        elif rng.random() < 0.15:
            doc = event(f"e{seed}-{i}", cid, "nps_response", ts, score=rng.randint(0, 10))
        else:
            doc = event(f"e{seed}-{i}", cid, rng.choice(types), ts)
        docs.append(doc)
        by_customer.setdefault(cid, []).append(doc)
    return docs


def customer_ids(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted({str(d["customer_id"]) for d in docs})


def last_sent(docs: Sequence[Mapping[str, Any]], sent: Sequence[Sent]) -> dict[str, Sent]:
    """Each customer's last message (keyed input: all of a customer's in one partition)."""
    out: dict[str, Sent] = {}
    for doc, s in zip(docs, sent, strict=True):
        cid = str(doc["customer_id"])
        if cid not in out or s.offset > out[cid].offset:
            assert cid not in out or out[cid].partition == s.partition, "keyed by customer"
            out[cid] = s
    return out


@dataclass
class Store:
    """Synchronous reads of one deployment's keys (plain Redis or Redis Cluster)."""

    client: SyncClient
    keys: Keys

    def records(self, ids: Sequence[str]) -> dict[str, CustomerRecord | None]:
        pipe = self.client.pipeline(transaction=False)
        for cid in ids:
            pipe.get(self.keys.state(cid))
        raws = pipe.execute()
        return {
            cid: None if raw is None else decode_record(raw)
            for cid, raw in zip(ids, raws, strict=True)
        }

    def states(self, ids: Sequence[str], model: Model) -> dict[str, CustomerState | None]:
        return {
            cid: None if rec is None or rec.state is None else decode_state(rec.state, model)
            for cid, rec in self.records(ids).items()
        }

    def unprocessed(self, last: Mapping[str, Sent]) -> list[str]:
        """Customers whose record does not yet mark their last input message as applied."""
        recs = self.records(list(last))
        return [
            cid
            for cid, s in last.items()
            if (rec := recs[cid]) is None or rec.marks.get(f"i{s.partition}", -1) < s.offset
        ]

    def nps_counts(self) -> Counter[str]:
        """NPS counters summed over source partitions (as ``StateStore.nps_counts``)."""
        total: Counter[str] = Counter()
        for src in self.client.smembers(self.keys.nps_sources()):  # type: ignore[union-attr]
            topic, partition = src.decode().rsplit(":", 1)
            raw = self.client.hgetall(self.keys.nps_counts(topic, int(partition)))
            for k, v in raw.items():  # type: ignore[union-attr]
                if k != b"_wm":
                    total[k.decode()] += int(v)
        return total


def expected_nps(folded: Mapping[str, Folded]) -> Counter[str]:
    """The counters the worker keeps for the folded responses: overall and by tier."""
    total: Counter[str] = Counter()
    for f in folded.values():
        for day, tier, cat in f.nps:
            total[f"{day}|*|{cat}"] += 1
            total[f"{day}|{tier}|{cat}"] += 1
    return total


def differences(
    actual: Mapping[str, CustomerState | None],
    expected: Mapping[str, CustomerState | None],
    model: Model,
    *,
    horizon_ms: float,
) -> dict[str, list[str]]:
    """Per customer, what differs once both sides are settled to ``horizon_ms``.

    The decay sweep fires crossings on its own schedule, so both states first get every
    crossing up to the horizon (``scoring.advance``, pure). Then values and score at the
    horizon must agree to a relative 1e-9, and tier, segments, clock (to the millisecond),
    events applied, NPS answer, last-seen times, cap counters and remembered event ids
    exactly.
    """
    out: dict[str, list[str]] = {}
    for cid in sorted(set(actual) | set(expected)):
        a, e = actual.get(cid), expected.get(cid)
        if a is None or e is None:
            if (a is None) != (e is None):
                out[cid] = [f"stored {a is not None}, expected {e is not None}"]
            continue
        a, _ = advance(a, cid, horizon_ms, model)
        e, _ = advance(e, cid, horizon_ms, model)
        diffs = []
        va, ve = values_at(a, model, horizon_ms), values_at(e, model, horizon_ms)
        for name, x, y in [("score", va.score, ve.score)] + [
            (d, va.dimensions[d], ve.dimensions[d]) for d in model.dimensions
        ]:
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                diffs.append(f"{name} {x!r} != {y!r}")
        if abs(a.clock_ms - e.clock_ms) > 1.0:
            diffs.append(f"clock {a.clock_ms!r} != {e.clock_ms!r}")
        for fld in (
            "tier", "segments", "events_applied", "nps_score", "nps_at_ms", "last_event_ms",
            "last_seen", "caps", "recent_ids",
        ):  # fmt: skip
            if getattr(a, fld) != getattr(e, fld):
                diffs.append(f"{fld} {getattr(a, fld)!r} != {getattr(e, fld)!r}")
        if diffs:
            out[cid] = diffs
    return out


# --------------------------------------------------------------------------- worker logs

_TIMESTAMP = r"\[(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]"
_ASSIGNED = re.compile(
    _TIMESTAMP + r".*?Setting newly assigned partitions\s*\n(?P<table>(?:[+|].*\n)+)"
)
_ROW = re.compile(r"^\|\s*(?P<topic>[^|\s]+)\s*\|\s*\{(?P<parts>[\d, -]*)\}\s*\|", re.M)
_JOINED = re.compile(r"Joined group '[^']+' \(generation (?P<gen>-?\d+)\)")


@dataclass(frozen=True)
class Assignment:
    """What a worker logged it owns after its latest rebalance."""

    generation: int | None
    topics: Mapping[str, frozenset[int]]
    count: int  # how many assignments it has logged so far

    def of(self, topic: str) -> frozenset[int]:
        return self.topics.get(topic, frozenset())


def latest_assignment(log_path: Path) -> Assignment | None:
    """The last "Setting newly assigned partitions" table in a faust worker's log."""
    text = log_path.read_text("utf-8", "replace")
    found = list(_ASSIGNED.finditer(text))
    if not found:
        return None
    table = found[-1].group("table")
    topics = {m.group("topic"): _partitions(m.group("parts")) for m in _ROW.finditer(table)}
    gens = _JOINED.findall(text)
    return Assignment(int(gens[-1]) if gens else None, topics, len(found))


def _partitions(text: str) -> frozenset[int]:
    """faust's compact partition sets: ``"0, 3, 6"`` or ``"0-3, 5"``.

    >>> sorted(_partitions("0-3, 5"))
    [0, 1, 2, 3, 5]
    """
    out: set[int] = set()
    for item in (t.strip() for t in text.split(",")):
        if "-" in item:
            lo, hi = item.split("-")
            out.update(range(int(lo), int(hi) + 1))
        elif item:
            out.add(int(item))
    return frozenset(out)

"""The offline check: one clean pass over the log read back (the reference), and what the
worker left in Redis and the topics compared with it."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from scoring import CustomerState, InvalidEvent, Model
from stream_app.contracts import cloudevent
from stream_app.messages import expected_partition
from stream_app.store.records import nps_fields
from tests.faults.workload import raw_of
from tests.support.diff import state_diff
from tests.support.fold import OfflineFold, canonical
from tests.support.kafka import Message


@dataclass
class Reference:
    """One clean pass over the log: expected states, changes, NPS counts and dead letters."""

    states: dict[str, CustomerState]
    changes: dict[str, bytes]  # change id -> canonical CloudEvent JSON
    collisions: set[str]  # ids the clean pass itself gives two different contents
    nps: Counter[str]
    dead: dict[tuple[int, int, int], tuple[str, bytes]]  # (incarnation, p, o) -> reason, bytes
    valid: int
    forwarded: int


def build_reference(
    incarnations: Sequence[Sequence[Message]],
    model: Model,
    *,
    dedup_memory: int,
    max_future_ms: int,
    partitions: int,
) -> Reference:
    """Every incarnation of the log in the order a worker meets it (partition, then offset)
    through one offline fold."""
    offline = OfflineFold(model, dedup_memory=dedup_memory, max_future_ms=max_future_ms)
    dead: dict[tuple[int, int, int], tuple[str, bytes]] = {}
    valid = forwarded = 0
    for inc, messages in enumerate(incarnations):
        for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
            raw = raw_of(m.value)
            got = offline.add(raw)
            if isinstance(got, InvalidEvent):
                dead[(inc, m.partition, m.offset)] = (got.reason, raw)
                continue
            valid += 1
            if m.partition != expected_partition(got.customer_id, partitions):
                forwarded += 1  # not produced by the harness (keyed): reported, not modelled
    changes: dict[str, bytes] = {}
    collisions: set[str] = set()
    for c in offline.changes():
        body = canonical(cloudevent(c))
        if changes.setdefault(c.change_id, body) != body:
            collisions.add(c.change_id)
    nps: Counter[str] = Counter()
    states: dict[str, CustomerState] = {}
    for cid, f in offline.customers.items():
        assert f.state is not None
        states[cid] = f.state
        for day, tier, category in f.nps:
            nps.update(nps_fields(day, tier, category))
    return Reference(states, changes, collisions, nps, dead, valid, forwarded)


@dataclass
class StateCheck:
    bad: dict[str, list[str]]  # customer -> what differs
    lost: int  # events the reference applied and the worker did not
    double: int  # events applied beyond the reference (counted twice)


def check_states(
    ref: Reference, actual: dict[str, CustomerState | None], model: Model
) -> StateCheck:
    out = StateCheck({}, 0, 0)
    for cid, want in ref.states.items():
        got = actual.get(cid)
        if got is None:
            out.lost += want.events_applied
            out.bad[cid] = ["no state"]
            continue
        out.lost += max(0, want.events_applied - got.events_applied)
        out.double += max(0, got.events_applied - want.events_applied)
        diffs = state_diff(got, want, model)
        if diffs:
            out.bad[cid] = diffs
    return out


@dataclass
class ChangeCheck:
    missing: list[str]  # reference ids not in the output
    dup_diff: list[str]  # ids published with more than one content
    wrong: list[str]  # ids whose content is not the reference's
    spurious: list[str]  # ids the reference does not have
    republished: int
    bad_json: int


def check_changes(ref: Reference, outputs: Sequence[tuple[int, Message]]) -> ChangeCheck:
    by_id: dict[str, set[bytes]] = defaultdict(set)
    bad_json = 0
    for _, m in outputs:
        try:
            doc = orjson.loads(m.value)
            by_id[doc["id"]].add(canonical(doc))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            bad_json += 1
    known = ref.changes
    return ChangeCheck(
        missing=[i for i in known if i not in by_id],
        dup_diff=[i for i, c in by_id.items() if len(c) > 1 and i not in ref.collisions],
        wrong=[
            i
            for i, c in by_id.items()
            if i in known and i not in ref.collisions and known[i] not in c
        ],
        spurious=[i for i in by_id if i not in known],
        republished=len(outputs) - len(by_id),
        bad_json=bad_json,
    )


@dataclass
class DeadLetterCheck:
    missing: list[tuple[int, int, int]]  # hostile messages with no dead letter
    wrong: list[str]  # dead letters that are not right
    again: int  # dead letters repeated (at-least-once)
    truncated: int


def _same_payload(doc: dict[str, Any], payload: bytes, whole: bytes) -> bool:
    if doc.get("payload_truncated"):  # a cut payload: its prefix, size and hash
        return (
            whole.startswith(payload)
            and doc.get("payload_size") == len(whole)
            and doc.get("payload_sha256") == hashlib.sha256(whole).hexdigest()
        )
    return payload == whole


def check_dead_letters(
    ref: Reference, dlq: Sequence[tuple[int, Message]], input_topic: str
) -> DeadLetterCheck:
    seen: Counter[tuple[int, int, int]] = Counter()
    out = DeadLetterCheck([], [], 0, 0)
    for inc, m in dlq:
        try:
            doc = orjson.loads(m.value)
            src = doc["source"]
            where = (inc, int(src["partition"]), int(src["offset"]))
            payload = base64.b64decode(doc["payload_b64"])
            reason = doc["reason"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            out.wrong.append(f"unreadable dead letter: {exc}")
            continue
        if src.get("topic") != input_topic:
            out.wrong.append(f"{where}: from topic {src.get('topic')!r}")
        exp = ref.dead.get(where)
        if exp is None:
            out.wrong.append(f"{where}: not a hostile message ({reason})")
            continue
        seen[where] += 1
        out.truncated += bool(doc.get("payload_truncated"))
        if reason != exp[0]:
            out.wrong.append(f"{where}: reason {reason} != {exp[0]}")
        if not _same_payload(doc, payload, exp[1]):
            out.wrong.append(f"{where}: payload differs ({len(payload)} vs {len(exp[1])} B)")
    out.missing = [k for k in ref.dead if k not in seen]
    out.again = sum(n - 1 for n in seen.values())
    return out

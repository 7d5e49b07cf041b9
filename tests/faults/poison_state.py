"""Scenario 7: poison keys, corrupt records and wrong types; nothing may stall or be lost.

One worker, its own Tansu and redis-server, the seeded workload in two phases:

* **poison keys**: a 400 KB key with a 600 KB value (``too_large``; the dead letter used to
  copy the key whole and exceed the broker's limit, stalling every partition), and valid
  events under keys of 5 to 64 KB (``key_too_large``); plus events from 2010, beyond the
  worker's ``ENGAGEMENT_MAX_EVENT_AGE_DAYS`` (``timestamp_too_old``);
* **corrupt records**, before the first event of some customers and, for others, between
  the phases (bit rot under a running worker): random bytes, a header whose length lies, a
  state of another layout, a good state with a broken explanation (``corrupt_state``);
* **wrong types**: the state key of some customers holds a hash, list, set or sorted set,
  again from the start or set between the phases (``store_rejected``).

Pass criteria: no batch retried and no traceback (nothing stalled), every poison case in the
dead-letter topic with its reason and its bytes (capped ones by size and SHA-256), each
poisoned record left exactly as it was put there, and every other customer exactly as one
offline pass gives it (state, changes with their ids and contents, NPS counters): the offline
pass here dead-letters the poisoned customers' events of the phase they were poisoned in.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from scoring import CustomerState, InvalidEvent, apply, encode_state, parse_event
from stream_app.contracts import cloudevent
from stream_app.store.records import encode_record, nps_fields
from stream_app.worker.deadletter import MAX_KEY_BYTES
from tests.faults.config import Config, Result, now_ms
from tests.faults.outcome import final_states, nps_actual
from tests.faults.run import Run
from tests.faults.workload import as_out, interleave, raw_of, split, valid_events
from tests.support.diff import state_diff
from tests.support.fold import canonical
from tests.support.kafka import Message, Out

MAX_AGE_DAYS = 3650
DAY_MS = 86_400_000
WRONG_TYPES = ("hash", "list", "set", "zset")


@dataclass
class Poison:
    """Which customers are poisoned how, and when (phase 1: before any event; 2: between)."""

    reason: dict[str, str] = field(default_factory=dict)  # customer -> dead-letter reason
    phase: dict[str, int] = field(default_factory=dict)
    kind: dict[str, str] = field(default_factory=dict)  # what was put there (for the report)
    raw: dict[str, Any] = field(default_factory=dict)  # customer -> what the key holds


@dataclass
class Expected:
    """The offline pass: states and changes of the healthy customers, dead letters."""

    states: dict[str, CustomerState] = field(default_factory=dict)
    changes: dict[str, bytes] = field(default_factory=dict)
    nps: Counter[str] = field(default_factory=Counter)
    dead: dict[tuple[int, int], tuple[str, bytes]] = field(default_factory=dict)


def poison_keys(n: int, seed: int) -> list[tuple[str, Out]]:
    """Messages whose keys (or timestamps) must send them to the dead-letter topic."""
    rng = random.Random(f"faults:{seed}:keys")
    ts = 1_600_000_000_000
    value = b'{"pad":"' + b"v" * 599_980 + b'"}'
    out = [("key_too_large", Out(value, b"k" * 400_000)), ("too_large", Out(value, b"pk-big"))]
    for i in range(n):
        doc = {
            "event_id": f"pk-{i}",
            "customer_id": f"pk-c{i}",
            "type": "web_visit",
            "timestamp": ts,
        }
        if i % 3 == 2:  # a valid key, an event from 2010
            old = {**doc, "timestamp": 1_262_304_000_000 + i}
            out.append(("timestamp_too_old", Out(orjson.dumps(old), f"pk-c{i}".encode())))
        else:
            size = rng.randint(MAX_KEY_BYTES + 1, 64 * 1024)
            out.append(("key_too_large", Out(orjson.dumps(doc), rng.randbytes(size))))
    return out


def corrupt_value(i: int, cid: str, run: Run) -> bytes:
    """One of four ways a stored record no longer decodes."""
    kind = i % 4
    if kind == 0:
        return random.Random(f"rot:{cid}").randbytes(40)
    if kind == 1:
        return b"4.rot i0=1 200 too short"  # the length field lies
    if kind == 2:
        return b'3 - [1,"a layout",{"of":"another model"}]'  # a 0.1-style JSON state
    state = apply(None, parse_event(_doc(cid), run.model, now_ms=now_ms()), run.model).state
    return encode_record(2, {}, encode_state(state), b"\x03\xff\xff broken explanation")


def _doc(cid: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"rot-{cid}",
            "customer_id": cid,
            "type": "web_visit",
            "timestamp": 1_700_000_000_000,
        }
    )


def put_poison(run: Run, poison: Poison, cids: Sequence[str], phase: int) -> None:
    """Corrupt (even positions) or mistype (odd) the records of ``cids``."""
    for i, cid in enumerate(cids):
        key = run.keys.state(cid)
        run.r.delete(key)
        if i % 2 == 0:
            value = corrupt_value(i // 2, cid, run)
            run.r.set(key, value)
            poison.reason[cid], poison.kind[cid], poison.raw[cid] = "corrupt_state", "rot", value
        else:
            kind = WRONG_TYPES[(i // 2 + 2 * phase) % 4]
            _mistype(run, key, kind)
            poison.reason[cid], poison.kind[cid] = "store_rejected", kind
            poison.raw[cid] = _holds(run, key)
        poison.phase[cid] = phase


def _mistype(run: Run, key: str, kind: str) -> None:
    """Make ``key`` hold a ``kind`` (hash, list, set or zset) instead of a record."""
    if kind == "hash":
        run.r.hset(key, "f", "v")
    elif kind == "list":
        run.r.rpush(key, "v")
    elif kind == "set":
        run.r.sadd(key, "v")
    else:
        run.r.zadd(key, {"v": 1.0})


def _holds(run: Run, key: str) -> Any:
    kind = run.r.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    reads: dict[str, Any] = {
        "string": run.r.get,
        "hash": run.r.hgetall,
        "list": lambda k: run.r.lrange(k, 0, -1),
        "set": run.r.smembers,
        "zset": lambda k: run.r.zrange(k, 0, -1, withscores=True),
    }
    return kind, reads.get(kind, lambda k: None)(key)


def expected(
    run: Run, messages: Sequence[Message], phase2: set[tuple[int, int]], poison: Poison
) -> Expected:
    """One clean pass (partition, then offset), as the worker should have done it."""
    clock, ex = now_ms(), Expected()
    settings = run.settings
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        where, raw = (m.partition, m.offset), raw_of(m.value)
        if m.key is not None and len(m.key) > MAX_KEY_BYTES:
            ex.dead[where] = ("key_too_large", raw)
            continue
        try:
            ev = parse_event(
                raw,
                run.model,
                now_ms=clock,
                max_future_ms=int(settings.max_future_seconds * 1000),
                max_age_ms=MAX_AGE_DAYS * DAY_MS,
            )
        except InvalidEvent as exc:
            ex.dead[where] = (exc.reason, raw)
            continue
        cid = ev.customer_id
        if cid in poison.reason and (poison.phase[cid] == 1 or where in phase2):
            ex.dead[where] = (poison.reason[cid], raw)
            continue
        result = apply(ex.states.get(cid), ev, run.model, dedup_memory=settings.dedup_memory)
        ex.states[cid] = result.state
        for c in result.changes:
            ex.changes[c.change_id] = canonical(cloudevent(c))
        if result.nps is not None:
            ex.nps.update(nps_fields(result.nps.day, result.nps.tier, result.nps.category))
    for cid in poison.reason:  # a poisoned record is not compared (it is what was put there)
        ex.states.pop(cid, None)
    return ex


def _dead_by_source(dlq: Sequence[Message]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for m in dlq:
        doc = orjson.loads(m.value)
        out.setdefault((doc["source"]["partition"], doc["source"]["offset"]), []).append(doc)
    return out


def _same_bytes(doc: dict[str, Any], whole: bytes) -> bool:
    kept = base64.b64decode(doc["payload_b64"])
    if doc.get("payload_truncated"):
        return (
            whole.startswith(kept)
            and doc.get("payload_sha256") == hashlib.sha256(whole).hexdigest()
        )
    return kept == whole


def scenario_poison_state(cfg: Config) -> Result:
    """7: poison keys, corrupt records and wrong types (see the module)."""
    res = Result("7 poison keys, corrupt records, wrong types")
    with Run("7-state", cfg) as run:
        run.env["ENGAGEMENT_MAX_EVENT_AGE_DAYS"] = str(MAX_AGE_DAYS)
        valid = [as_out(d) for d in valid_events(cfg)]
        keyed = poison_keys(max(6, cfg.hostile // 200), cfg.seed)
        first, second = split(interleave(valid, [o for _, o in keyed], cfg.seed), 2)
        cids = sorted({o.key.decode() for o in valid if o.key})
        in_first = {o.key.decode() for o in first if o.key and len(o.key) <= 128}
        in_second = {o.key.decode() for o in second if o.key and len(o.key) <= 128}
        both = sorted(in_first & in_second & set(cids))
        rng = random.Random(f"faults:{cfg.seed}:state")
        n = max(4, len(cids) // 25)
        early = rng.sample([c for c in cids if c not in both] or cids, min(n, len(cids) // 4))
        late = rng.sample([c for c in both if c not in early], min(n, len(both) // 4))
        poison = Poison()
        put_poison(run, poison, early, 1)
        w = run.add_worker("w1")
        w.launch()
        run.feed(first)
        phase1 = run.read_input()
        ref1 = expected(run, phase1, set(), poison)
        _settle(run, ref1, phase1)
        put_poison(run, poison, late, 2)
        run.faults = len(early) + len(late) + len(keyed)
        run.feed(second)
        messages = run.read_input()
        phase2 = {(m.partition, m.offset) for m in messages} - {
            (m.partition, m.offset) for m in phase1
        }
        ref = expected(run, messages, phase2, poison)
        _settle(run, ref, messages)
        _compare(run, ref, poison, res, w.log_text())
        res.details["poisoned customers (from the start / while running)"] = (
            f"{len(early)} / {len(late)}"
        )
        res.details["poisoned by kind"] = dict(Counter(poison.kind.values()))
        res.details["worker alive at the end"] = w.alive
        res.faults, res.events = run.faults, len(valid)
        res.ok = res.ok and w.alive
    return res


def _settle(run: Run, ref: Expected, messages: Sequence[Message]) -> None:
    """Wait until every healthy customer has its events and every dead letter is there."""
    wanted = {c: s.events_applied for c, s in ref.states.items()}

    def done() -> bool:
        states = final_states(run, sorted(wanted))
        if any(s is None or s.events_applied < wanted[c] for c, s in states.items()):
            return False
        return set(ref.dead) <= set(_dead_by_source(run.read_to_end(run.settings.dlq_topic)))

    run.wait(
        done, timeout=cfg_timeout(run), what="every event scored or dead-lettered", interval=1.0
    )


def cfg_timeout(run: Run) -> float:
    return run.cfg.settle_timeout


def _compare(run: Run, ref: Expected, poison: Poison, res: Result, logs: str) -> None:
    d = res.details
    actual = final_states(run, sorted(ref.states))
    bad = {
        c: diffs
        for c, s in actual.items()
        if (diffs := ["no state"] if s is None else state_diff(s, ref.states[c], run.model))
    }
    dead = _dead_by_source(run.read_to_end(run.settings.dlq_topic))
    wrong = [
        f"{w}: {[x['reason'] for x in dead.get(w, [])]} != {r}"
        for w, (r, whole) in ref.dead.items()
        if not any(x["reason"] == r and _same_bytes(x, whole) for x in dead.get(w, []))
    ]
    extra = [w for w in dead if w not in ref.dead]
    outputs: dict[str, set[bytes]] = {}
    for m in run.read_to_end(run.settings.output_topic):
        doc = orjson.loads(m.value)
        outputs.setdefault(doc["id"], set()).add(canonical(doc))
    missing = [i for i in ref.changes if i not in outputs]
    spurious = [i for i in outputs if i not in ref.changes]
    differ = [i for i, c in outputs.items() if i in ref.changes and c != {ref.changes[i]}]
    touched = [
        c
        for c in poison.raw
        if (
            run.r.get(run.keys.state(c))
            if poison.kind[c] == "rot"
            else _holds(run, run.keys.state(c))
        )
        != poison.raw[c]
    ]
    nps_got = nps_actual(run)
    nps_diff = {k for k in set(nps_got) | set(ref.nps) if nps_got.get(k, 0) != ref.nps.get(k, 0)}
    retries = logs.count("to retry") + logs.count("failed; retrying")
    tracebacks = logs.count("Traceback (most recent call last)")
    res.mismatches = len(bad) + len(spurious) + len(differ) + len(extra) + len(nps_diff)
    res.mismatches += len(touched)
    res.lost = len(missing) + len(wrong)
    res.ok = res.mismatches == 0 and res.lost == 0 and retries == 0 and tracebacks == 0
    d["healthy customers / differing"] = f"{len(ref.states)} / {len(bad)}"
    if bad:
        d["first differences"] = {c: bad[c][:3] for c in sorted(bad)[:3]}
    d["dead letters expected / missing or wrong / unexpected"] = (
        f"{len(ref.dead)} / {len(wrong)} / {len(extra)}"
    )
    d["dead letters by reason"] = dict(Counter(r for r, _ in ref.dead.values()))
    if wrong:
        d["first wrong dead letters"] = wrong[:5]
    d["changes expected / missing / spurious / other content"] = (
        f"{len(ref.changes)} / {len(missing)} / {len(spurious)} / {len(differ)}"
    )
    d["NPS counters differing"] = len(nps_diff)
    d["poisoned records touched"] = len(touched)
    d["worker log: batch retries / tracebacks (stalls)"] = f"{retries} / {tracebacks}"

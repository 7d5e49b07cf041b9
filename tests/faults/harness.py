"""Fault-injection harness: attack the pipeline's delivery guarantees and measure what holds.

Every scenario runs against its own throw-away services on loopback (a Tansu broker and a
``redis-server``, so restarting them never touches another test), drives real worker processes
(``python -m stream_app.cli worker``, environment from ``tests/integration/workers.py``), feeds
them a seeded simulated workload with duplicates and disorder (keyed by customer), injects
faults, and then compares the outcome with an offline reference.

The reference is one clean pass of the *same* log: the input topic is read back, so the order
is exactly what a worker meets (partition, then offset; after a broker restart the new
incarnation of the log comes after the old one), and each message goes through
``scoring.parse_event`` and ``scoring.apply`` as the worker does it. Compared are:

* the final state of every customer (clock, values at the clock with a relative tolerance of
  1e-9, tier, segments, events applied, NPS answer, last event time, caps);
* every change id of the reference present in the output topic, each id with one content only,
  that content equal to the reference's, and no change that the reference does not have;
* events applied never above the reference (no event counted twice) and the NPS counters equal
  to the reference's (each response counted once);
* the dead-letter topic: every hostile message there with its reason and its original bytes,
  and nothing else.

Decay sweep: the workers run with ``ENGAGEMENT_DECAY_TICK_MS`` of one hour, so the timer never
fires during a run. Crossings between a customer's events still happen, inside
``scoring.apply`` (cause ``decay``), and are compared like every other change. The timer is
left out because what it fires depends on wall-clock time and on how far each partition has
progressed when a tick happens: with out-of-order events it may fire a crossing before a late
event that a clean pass applies first, so no offline pass reproduces it exactly (see
``docs/guarantees.md``).

Run ``python -m tests.faults.harness --help``; ``scripts/faults`` runs the soak.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis

from scoring import (
    CustomerState,
    InvalidEvent,
    Model,
    apply,
    decode_state,
    load_model,
    parse_event,
)
from stream_app.contracts import cloudevent
from stream_app.devkit.simulator import SimConfig, history, inject_duplicates_and_disorder
from stream_app.devkit.stack import (
    LocalService,
    restart_redis,
    start_redis,
    start_tansu,
)
from stream_app.kafka.topics import prepare
from stream_app.messages import expected_partition
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.records import decode_record, nps_fields
from tests.integration.workers import MARKER, Message, Out, Sent, produce, read_until, worker_env

REPO = Path(__file__).resolve().parents[2]

T = TypeVar("T")

DAY_MS = 86_400_000
REL_TOL = 1e-9
#: The decay timer's interval in the workers: one hour, i.e. never during a run (see above).
SWEEP_OFF_MS = "3600000"
MIB = 1024 * 1024
#: End of the simulated history (2026-11-01T00:00:00Z), fixed so a run is reproducible.
WORKLOAD_END_MS = 1_793_491_200_000


class HarnessError(RuntimeError):
    """A scenario could not run to its end (a worker crashed, a wait timed out...)."""


def now_ms() -> int:
    return int(time.time() * 1000)


# =========================================================================== configuration


@dataclass
class Config:
    """Sizes of one run. The defaults are the small scale of the normal test suite."""

    events: int = 3000
    customers: int = 200
    kills: int = 3
    hostile: int = 2000
    partitions: int = 4
    seed: int = 7
    duplicate_rate: float = 0.05
    disorder_rate: float = 0.1
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="faults-")))
    settle_timeout: float = 120.0
    #: Redis pauses of scenario 6, in seconds (one beyond the worker's 10 s socket timeout
    #: exercises the timeout path too).
    pauses: tuple[float, ...] = (3.0, 3.0)
    #: Waiting for the final state gives up after this long without any Redis write.
    quiet: float = 15.0
    #: Upper bound of the random extra delay before a fault, seconds.
    jitter: float = 0.2

    @classmethod
    def soak(cls, **overrides: Any) -> Config:
        base = cls(
            events=50_000,
            customers=2_000,
            kills=5,
            hostile=100_000,
            settle_timeout=900.0,
            quiet=30.0,
            pauses=(5.0, 5.0, 12.0),
            jitter=2.0,
        )
        for k, v in overrides.items():
            setattr(base, k, v)
        return base


# =========================================================================== results


@dataclass
class Result:
    """One row of the summary table, with the details behind it."""

    scenario: str
    events: int = 0
    faults: int = 0
    mismatches: int = 0
    lost: int = 0
    dup_diff: int = 0
    recovery_s: float | None = None
    ok: bool = False
    #: When set, mismatches and losses are measured, not failures (``appendfsync everysec``).
    measured_only: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def format_table(results: Sequence[Result]) -> str:
    """The summary table (plain text, one row per scenario)."""
    head = (
        "scenario",
        "events",
        "faults injected",
        "mismatches",
        "lost",
        "dup-diff content",
        "max recovery",
        "result",
    )
    rows = [head]
    for r in results:
        if r.error:
            verdict = "ERROR"
        elif r.measured_only:
            verdict = "measured" if r.ok else "FAIL"
        else:
            verdict = "pass" if r.ok else "FAIL"
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s"
        rows.append(
            (
                r.scenario,
                str(r.events),
                str(r.faults),
                str(r.mismatches),
                str(r.lost),
                str(r.dup_diff),
                rec,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def format_details(results: Sequence[Result]) -> str:
    out = []
    for r in results:
        out.append(f"{r.scenario}:")
        if r.error:
            out.append(f"  ERROR: {r.error}")
        for k, v in r.details.items():
            out.append(f"  {k}: {v}")
        for note in r.notes:
            out.append(f"  - {note}")
    return "\n".join(out)


# =========================================================================== workload


def valid_events(cfg: Config) -> list[dict[str, Any]]:
    """``cfg.events`` simulated events (duplicates included) over about ``cfg.customers``.

    The history of a 120-day window ending at :data:`WORKLOAD_END_MS` is subsampled uniformly
    (keeping time order) so that every customer's whole life is in it, then duplicates and
    disorder are injected. Same seed and sizes, same events, whenever it runs."""
    base = max(1, round(cfg.events / (1 + cfg.duplicate_rate)))
    days = 120.0
    end = min(WORKLOAD_END_MS, now_ms() - DAY_MS)
    while True:
        sim = SimConfig.ending(end, days, customers=cfg.customers, seed=cfg.seed)
        full = list(history(sim))
        if len(full) >= base:
            break
        days *= 2
    rng = random.Random(f"faults:{cfg.seed}:subsample")
    keep = sorted(rng.sample(range(len(full)), base))
    events = [full[i] for i in keep]
    out = inject_duplicates_and_disorder(
        events, duplicate_rate=cfg.duplicate_rate, disorder_rate=cfg.disorder_rate, seed=cfg.seed
    )
    return out[: cfg.events] if len(out) > cfg.events else out


def as_out(doc: dict[str, Any]) -> Out:
    return Out(orjson.dumps(doc), doc["customer_id"].encode())


def _event_bytes(**fields: Any) -> bytes:
    doc = {
        "event_id": "h",
        "customer_id": "hc",
        "type": "web_visit",
        "timestamp": 1_600_000_000_000,
    }
    doc.update(fields)
    return orjson.dumps({k: v for k, v in doc.items() if v is not _DROP})


_DROP = object()


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def hostile_messages(n: int, seed: int, *, big: bool) -> list[tuple[str, Out]]:  # noqa: C901
    """``n`` messages that must all be dead-lettered, of many kinds (kind name, message).

    ``big`` adds 1 MiB messages and ~200 KB random blobs (a few, bounded), and ~60 KB
    strings; without it every message stays under a few KB."""
    rng = random.Random(f"faults:{seed}:hostile")
    now = now_ms()

    def wrong_types() -> bytes:
        return rng.choice(
            [
                _event_bytes(event_id=12345),
                _event_bytes(event_id=""),
                _event_bytes(type=5),
                _event_bytes(properties=[1, 2]),
                _event_bytes(properties="x"),
                _event_bytes(timestamp="yesterday"),
                _event_bytes(timestamp=1.5),
                _event_bytes(timestamp=True),
                _event_bytes(timestamp=None),
                _event_bytes(customer_id=42),
                _event_bytes(customer_id=None),
                _event_bytes(customer_id=["a"]),
            ]
        )

    def nan_inf() -> bytes:
        base = b'{"event_id":"h","customer_id":"hc","type":"nps_response","timestamp":'
        return rng.choice(
            [
                base + b"NaN}",
                base + b"Infinity}",
                base + b"-Infinity}",
                base + b"1e999}",
                base + b'1600000000000,"properties":{"score":NaN}}',
                base + b'1600000000000,"properties":{"score":1e400}}',
            ]
        )

    def negative_ts() -> bytes:
        return _event_bytes(
            timestamp=rng.choice([-1, -86_400_000, -(2**62), "1969-12-31T23:59:59Z"])
        )

    def future_ts() -> bytes:
        return _event_bytes(
            timestamp=rng.choice(
                [
                    now + 2 * DAY_MS,
                    now + 3650 * DAY_MS,
                    "9999-12-31T23:59:59Z",
                    "10000-01-01T00:00:00Z",
                    2**63 - 1,
                ]
            )
        )

    def unknown_type() -> bytes:
        return _event_bytes(type=rng.choice(["purchase", "", "WEB_VISIT", "web_visit ", "\x00"]))

    def nps_bad() -> bytes:
        score = rng.choice([11, -1, 10.5, "9", None, 1000, True])
        props: Any = _DROP if score is None else {"score": score}
        return _event_bytes(type="nps_response", properties=props)

    def control_ids() -> bytes:
        cid = rng.choice(["cust\x00001", "cust\n1", "cust\t1", "cust\x7f", "cu st", "c\u200b1", ""])
        return _event_bytes(customer_id=cid)

    def not_object() -> bytes:
        return rng.choice([b"[]", b'"a string"', b"42", b"null", b"true", b"[1,2,3]"])

    def missing_field() -> bytes:
        name = rng.choice(["event_id", "customer_id", "type", "timestamp"])
        return _event_bytes(**{name: _DROP})

    def truncated() -> bytes:
        full = _event_bytes(event_id=f"t-{rng.random()}", properties={"url": "/pricing"})
        return full[: rng.randint(1, len(full) - 1)]

    def deep() -> bytes:
        if rng.random() < 0.5:
            d = rng.randint(1100, 3000)
            return b"[" * d + b"]" * d
        return (
            b'{"event_id":"h","customer_id":'
            + _nested(rng.randint(200, 900))
            + b',"type":"web_visit","timestamp":1600000000000}'
        )

    kinds: list[tuple[str, Callable[[], bytes | None]]] = [
        ("random_bytes", lambda: rng.randbytes(rng.randint(1, 300))),
        ("truncated_json", truncated),
        ("deep_nesting", deep),
        ("wrong_types", wrong_types),
        ("nan_infinity", nan_inf),
        ("negative_timestamp", negative_ts),
        ("future_timestamp", future_ts),
        ("unknown_type", unknown_type),
        ("bad_nps", nps_bad),
        ("control_chars_in_id", control_ids),
        ("not_object", not_object),
        ("missing_field", missing_field),
        ("empty", lambda: b""),
        ("tombstone", lambda: None),
    ]
    fixed: list[tuple[str, Callable[[], bytes | None]]] = []
    if big:
        pad = b'{"event_id":"big","customer_id":"hc","type":"web_visit","timestamp":1,"pad":"'
        one_mib = pad + b"x" * (MIB - len(pad) - 2) + b'"}'
        fixed += [("1mib_message", lambda: one_mib)] * min(20, max(2, n // 5000))
        fixed += [("200kb_random", lambda: rng.randbytes(200_000))] * min(20, max(1, n // 5000))
        fixed += [("huge_string_id", lambda: _event_bytes(customer_id="x" * 60_000))] * min(
            200, max(2, n // 500)
        )
        fixed += [("huge_event_id", lambda: _event_bytes(event_id="e" * 70_000))] * min(
            200, max(2, n // 500)
        )
    out: list[tuple[str, Out]] = []
    for i in range(n):
        if i < len(fixed):
            name, make = fixed[i]
        else:
            name, make = kinds[i % len(kinds)]
        value = make()
        r = rng.random()
        key: bytes | None = (
            None if r < 0.4 else (rng.randbytes(8) if r < 0.6 else f"hc-{i}".encode())
        )
        if value is None and key is None:
            key = f"tomb-{i}".encode()  # a tombstone needs a key
        out.append((name, Out(value, key)))  # type: ignore[arg-type]
    rng.shuffle(out)
    return out


def interleave(valid: Sequence[Out], hostile: Sequence[Out], seed: int) -> list[Out]:
    """Both lists merged at random positions, each keeping its own order."""
    rng = random.Random(f"faults:{seed}:interleave")
    total = len(valid) + len(hostile)
    spots = set(rng.sample(range(total), len(hostile)))
    v, h = iter(valid), iter(hostile)
    return [next(h) if i in spots else next(v) for i in range(total)]


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    size = math.ceil(len(items) / parts)
    return [list(items[i * size : (i + 1) * size]) for i in range(parts)]


def tail_split(items: Sequence[T]) -> tuple[list[T], list[T]]:
    """``items`` as (most of them, a short tail): the tail is fed after a fault, so that every
    partition has work to show the recovery with."""
    t = min(len(items) // 2, max(60, len(items) // 20))
    return list(items[: len(items) - t]), list(items[len(items) - t :])


def raw_of(value: bytes | None) -> bytes:
    """What the worker parses for a message value (a tombstone has no bytes)."""
    return b"" if value is None else value


# =========================================================================== reference


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


def canonical(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def build_reference(
    incarnations: Sequence[Sequence[Message]],
    model: Model,
    *,
    dedup_memory: int,
    max_future_ms: int,
    partitions: int,
) -> Reference:
    clock = now_ms()
    states: dict[str, CustomerState] = {}
    changes: dict[str, bytes] = {}
    collisions: set[str] = set()
    nps: Counter[str] = Counter()
    dead: dict[tuple[int, int, int], tuple[str, bytes]] = {}
    valid = forwarded = 0
    for inc, messages in enumerate(incarnations):
        for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
            raw = raw_of(m.value)
            try:
                ev = parse_event(raw, model, now_ms=clock, max_future_ms=max_future_ms)
            except InvalidEvent as exc:
                dead[(inc, m.partition, m.offset)] = (exc.reason, raw)
                continue
            valid += 1
            if m.partition != expected_partition(ev.customer_id, partitions):
                forwarded += 1  # not produced by the harness (keyed): reported, not modelled
            result = apply(states.get(ev.customer_id), ev, model, dedup_memory=dedup_memory)
            states[ev.customer_id] = result.state
            for c in result.changes:
                body = canonical(cloudevent(c))
                if changes.setdefault(c.change_id, body) != body:
                    collisions.add(c.change_id)
            if result.nps is not None:
                nps.update(nps_fields(result.nps.day, result.nps.tier, result.nps.category))
    return Reference(states, changes, collisions, nps, dead, valid, forwarded)


def state_diffs(actual: CustomerState, expected: CustomerState) -> list[str]:
    """What differs between two states (values with a relative tolerance)."""
    diffs = []
    for name in (
        "clock_ms",
        "tier",
        "segments",
        "events_applied",
        "nps_score",
        "nps_at_ms",
        "last_event_ms",
        "last_seen",
        "caps",
    ):
        a, e = getattr(actual, name), getattr(expected, name)
        if a != e:
            diffs.append(f"{name} {a!r} != {e!r}")
    av, ev = actual.values, expected.values
    if len(av) != len(ev) or not all(
        math.isclose(a, e, rel_tol=REL_TOL, abs_tol=REL_TOL) for a, e in zip(av, ev, strict=True)
    ):
        diffs.append(f"values {av!r} != {ev!r}")
    return diffs


@dataclass
class StateCheck:
    bad: dict[str, list[str]]  # customer -> what differs
    lost: int  # events the reference applied and the worker did not
    double: int  # events applied beyond the reference (counted twice)


def check_states(ref: Reference, actual: dict[str, CustomerState | None]) -> StateCheck:
    out = StateCheck({}, 0, 0)
    for cid, want in ref.states.items():
        got = actual.get(cid)
        if got is None:
            out.lost += want.events_applied
            out.bad[cid] = ["no state"]
            continue
        out.lost += max(0, want.events_applied - got.events_applied)
        out.double += max(0, got.events_applied - want.events_applied)
        diffs = state_diffs(got, want)
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


# =========================================================================== processes


class WorkerProc:
    """One worker subprocess (relaunchable with the same environment and log file)."""

    def __init__(self, env: dict[str, str], name: str, workdir: Path) -> None:
        self.name = name
        self.env = {**env, "ENGAGEMENT_DATA_DIR": str(workdir / f"faust-{name}")}
        self.log_path = workdir / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.launches = 0
        self.should_run = False

    def launch(self) -> None:
        self.launches += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== harness: launch {self.launches} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream_app.cli", "worker"],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.should_run = True

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap."""
        self.should_run = False
        self.send(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (after SIGCONT, in case it is stopped), SIGKILL after ``timeout``."""
        self.should_run = False
        if self.process is None:
            return
        self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def rss_kib(self) -> int | None:
        """VmRSS from /proc (None when the process is gone)."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except (OSError, AssertionError):
            return None
        m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        return int(m.group(1)) if m else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, limit: int = 4000) -> str:
        return self.log_text()[-limit:]


# =========================================================================== one run


class Run:
    """Services, workers, feeding, observation and the final comparison of one scenario."""

    def __init__(
        self,
        scenario: str,
        cfg: Config,
        *,
        appendonly: bool = False,
        appendfsync: str = "always",
    ) -> None:
        self.scenario = scenario
        self.cfg = cfg
        self.dir = cfg.workdir / re.sub(r"[^A-Za-z0-9_.-]+", "_", scenario)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(f"faults:{cfg.seed}:{scenario}")
        self.redis_svc: LocalService = start_redis(
            data_dir=self.dir / "redis", appendonly=appendonly, appendfsync=appendfsync
        )
        try:
            self.tansu: LocalService = start_tansu(log_dir=self.dir / "tansu")
        except BaseException:
            self.redis_svc.stop()
            raise
        self.env = worker_env(
            self.tansu,
            self.redis_svc,
            self.dir,
            name=re.sub(r"[^a-z0-9]+", "", scenario.lower())[:12] or "faults",
            partitions=cfg.partitions,
            ENGAGEMENT_DECAY_TICK_MS=SWEEP_OFF_MS,
        )
        self.settings = Settings.from_env(self.env)
        self.model = load_model(self.settings.model_path)
        self.keys = Keys(self.settings.key_prefix, self.model.name)
        self.r = redis.Redis.from_url(
            self.redis_svc.url, socket_timeout=5.0, socket_connect_timeout=2.0
        )
        self.workers: list[WorkerProc] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="feeder")
        self.pending: list[concurrent.futures.Future[list[Sent]]] = []
        self.incarnations: list[list[Message]] = []  # read-back input, per broker incarnation
        self.outputs: list[tuple[int, Message]] = []
        self.dlq: list[tuple[int, Message]] = []
        self.produced = 0  # messages produced to the current incarnation
        self.customers: set[str] = set()
        self.valid_sent = 0
        self.hostile_sent = 0
        self.faults = 0
        self.recoveries: list[float] = []
        self.notes: list[str] = []
        self.details: dict[str, Any] = {}
        self._owner: dict[str, int] = {}
        self.prepare()

    # ------------------------------------------------------------------ lifecycle

    def prepare(self) -> None:
        asyncio.run(prepare(self.settings, timeout_s=30.0))

    def add_worker(self, name: str) -> WorkerProc:
        w = WorkerProc(self.env, name, self.dir)
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            w.send(signal.SIGCONT)
            w.send(signal.SIGTERM)
        for w in self.workers:
            w.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.r.close()
        self.tansu.kill()
        self.redis_svc.kill()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_workers(self) -> None:
        for w in self.workers:
            if w.should_run and not w.alive:
                code = w.process.poll() if w.process else None
                raise HarnessError(
                    f"worker {w.name} exited unexpectedly (code {code}); log tail:\n{w.log_tail()}"
                )

    def wait(
        self,
        condition: Callable[[], T],
        *,
        timeout: float,
        what: str,
        fail: bool = True,
        interval: float = 0.1,
    ) -> T:
        """Poll ``condition`` until truthy (returned); at the deadline raise, or return the
        last value when ``fail`` is False. A worker that died meanwhile raises at once."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            self.check_workers()
            if time.monotonic() > deadline:
                if fail:
                    tails = "\n".join(f"--- {w.name}:\n{w.log_tail(2500)}" for w in self.workers)
                    raise HarnessError(f"timed out after {timeout:g}s waiting for {what}\n{tails}")
                return value
            time.sleep(interval)

    # ------------------------------------------------------------------ feeding

    def feed(self, outs: Sequence[Out]) -> concurrent.futures.Future[list[Sent]]:
        """Produce ``outs`` to the input topic in the background (in order, acks=all)."""
        for o in outs:
            if o.key is not None and o.value is not None:
                with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
                    doc = orjson.loads(o.value)
                    if isinstance(doc, dict) and doc.get("customer_id", "").encode() == o.key:
                        self.customers.add(doc["customer_id"])
        self.produced += len(outs)
        brokers, topic = self.tansu.url, self.settings.input_topic
        fut = self.pool.submit(lambda: asyncio.run(produce(brokers, topic, list(outs))))
        self.pending.append(fut)
        return fut

    def fed(self, timeout: float = 120.0) -> None:
        """Wait for every background produce so far (raising its error, if any)."""
        for fut in self.pending:
            fut.result(timeout)
        self.pending = []

    # ------------------------------------------------------------------ observation

    def owner(self, cid: str) -> int:
        p = self._owner.get(cid)
        if p is None:
            p = self._owner[cid] = expected_partition(cid, self.cfg.partitions)
        return p

    def raw_records(self, cids: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for i in range(0, len(cids), 1000):
            chunk = cids[i : i + 1000]
            out.extend(self.r.mget([self.keys.state(c) for c in chunk]))  # type: ignore[arg-type]
        return out

    def versions(self) -> dict[str, int] | None:
        """Every known customer's record version (None when Redis does not answer)."""
        cids = sorted(self.customers)
        try:
            raws = self.raw_records(cids)
        except redis.RedisError:
            return None
        return {
            c: int(raw.split(b" ", 1)[0].split(b".", 1)[0])  # "<version>.<write id>"
            for c, raw in zip(cids, raws, strict=True)
            if raw is not None
        }

    def sample(self, cids: Sequence[str]) -> dict[str, tuple[int, int, float]]:
        """(version, events applied, clock) of each of ``cids`` (absent: zeros)."""
        out: dict[str, tuple[int, int, float]] = {}
        for cid, raw in zip(cids, self.raw_records(cids), strict=True):
            if raw is None:
                out[cid] = (0, 0, -math.inf)
                continue
            rec = decode_record(raw)
            st = decode_state(rec.state, self.model) if rec.state else None
            out[cid] = (rec.version, st.events_applied if st else 0, st.clock_ms if st else 0.0)
        return out

    def progress(self) -> list[int] | None:
        """Per input partition, the sum of its customers' record versions (grows per write)."""
        v = self.versions()
        if v is None:
            return None
        sums = [0] * self.cfg.partitions
        for cid, version in v.items():
            sums[self.owner(cid)] += version
        return sums

    def writes(self) -> int | None:
        """Fenced-write and NPS script calls Redis has served (a cheap activity counter)."""
        try:
            stats = self.r.info("commandstats")
        except redis.RedisError:
            return None
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    def wait_progress(self, baseline: list[int] | None, *, timeout: float, what: str) -> None:
        """Wait until every partition's progress is above ``baseline`` (None: above 0)."""
        base = baseline or [0] * self.cfg.partitions
        active = {self.owner(c) for c in self.customers}

        def moved() -> bool:
            cur = self.progress()
            return cur is not None and all(cur[p] > base[p] for p in active)

        self.wait(moved, timeout=timeout, what=what)

    def random_moment(self, *, max_wait: float = 8.0) -> bool:
        """Let the worker(s) write a random number of times, then wait a random extra delay:
        the moment for the next fault. Returns whether writes were happening just before."""
        start = self.writes() or 0
        k = self.rng.randint(1, 40)
        self.wait(
            lambda: (self.writes() or 0) >= start + k,
            timeout=max_wait,
            what="writes before a fault",
            fail=False,
            interval=0.02,
        )
        time.sleep(self.rng.uniform(0.0, self.cfg.jitter))  # the random moment itself
        before = self.writes() or 0
        time.sleep(0.05)  # a short look: were writes still going on?
        return (self.writes() or 0) > before

    def recovered(self, t0: float, baseline: list[int] | None, *, what: str) -> float:
        """Wait until every partition progressed past ``baseline``; record the time since
        ``t0`` as a recovery time."""
        self.wait_progress(baseline, timeout=120.0, what=what)
        dt = time.monotonic() - t0
        self.recoveries.append(dt)
        return dt

    # ------------------------------------------------------------------ reading topics

    def read_input(self, timeout: float = 120.0) -> list[Message]:
        """The whole input topic of the current broker incarnation, read back."""
        self.fed()
        n = self.produced
        got = asyncio.run(
            read_until(self.tansu.url, self.settings.input_topic, lambda ms: len(ms) >= n, timeout)
        )
        if got is None:
            raise HarnessError(f"could not read back {n} input messages in {timeout:g}s")
        if len(got) != n:
            self.notes.append(f"input read back {len(got)} messages, {n} produced")
        return got

    def read_to_end(self, topic: str, timeout: float = 180.0) -> list[Message]:
        """Everything in ``topic`` (not consumed by the worker): markers are written to every
        partition, then the topic is read until all of them show (markers left out)."""
        markers = [Out(MARKER, b"harness-marker", p) for p in range(self.settings.partitions)]
        sent = asyncio.run(produce(self.tansu.url, topic, markers))
        ends = {(s.partition, s.offset) for s in sent}
        seen: set[tuple[int, int]] = set()
        count = [0]

        def done(ms: list[Message]) -> bool:
            for m in ms[count[0] :]:
                seen.add((m.partition, m.offset))
            count[0] = len(ms)
            return ends <= seen

        got = asyncio.run(read_until(self.tansu.url, topic, done, timeout))
        if got is None:
            raise HarnessError(f"could not read {topic} to its end in {timeout:g}s")
        return [m for m in got if m.value != MARKER]

    def snapshot_topics(self) -> None:
        """Read back input, output and DLQ of the current broker incarnation (before it goes)."""
        inc = len(self.incarnations)
        self.incarnations.append(self.read_input())
        self.outputs += [(inc, m) for m in self.read_to_end(self.settings.output_topic)]
        self.dlq += [(inc, m) for m in self.read_to_end(self.settings.dlq_topic)]
        self.produced = 0

    # ------------------------------------------------------------------ final comparison

    def settle(self, ref: Reference) -> list[str]:
        """Wait until every customer's ``events_applied`` reaches the reference (deadline:
        ``settle_timeout``); return the customers still behind."""
        cache: dict[str, tuple[bytes, int]] = {}  # cid -> (fence token, events_applied)
        wanted = {c: s.events_applied for c, s in ref.states.items()}
        cids = sorted(wanted)

        def behind() -> list[str]:
            try:
                raws = self.raw_records(cids)
            except redis.RedisError:
                return cids
            late = []
            for cid, raw in zip(cids, raws, strict=True):
                if raw is None:
                    late.append(cid)
                    continue
                version = raw.split(b" ", 1)[0]  # the fence token: changes with every write
                hit = cache.get(cid)
                if hit is None or hit[0] != version:
                    rec = decode_record(raw)
                    applied = decode_state(rec.state, self.model).events_applied if rec.state else 0
                    hit = cache[cid] = (version, applied)
                if hit[1] < wanted[cid]:
                    late.append(cid)
            return late

        # Give up early once Redis has seen no write for ``quiet`` seconds: nothing is moving
        # any more (the measured scenarios, where events are lost, end here).
        quiet = self.cfg.quiet
        last = [self.writes(), time.monotonic()]

        def done() -> bool:
            if not behind():
                return True
            w = self.writes()
            if w != last[0]:
                last[0], last[1] = w, time.monotonic()
            return time.monotonic() - last[1] > quiet

        self.wait(
            done,
            timeout=self.cfg.settle_timeout,
            what="every customer's events applied",
            fail=False,
            interval=0.5,
        )
        return behind()

    def settle_dlq(self, ref: Reference) -> None:
        """Wait (deadline) until the DLQ holds every expected dead letter of this incarnation."""
        inc = len(self.incarnations) - 1
        want = {(p, o) for (i, p, o) in ref.dead if i == inc}
        if not want:
            return
        seen: set[tuple[int, int]] = set()
        count = [0]
        moved = [time.monotonic()]

        def done(ms: list[Message]) -> bool:
            if len(ms) > count[0]:
                moved[0] = time.monotonic()
            for m in ms[count[0] :]:
                with contextlib.suppress(Exception):
                    src = orjson.loads(m.value)["source"]
                    seen.add((src["partition"], src["offset"]))
            count[0] = len(ms)
            # all there, or nothing new for ``quiet`` seconds (a measured scenario lost some)
            return want <= seen or time.monotonic() - moved[0] > self.cfg.quiet

        asyncio.run(
            read_until(self.tansu.url, self.settings.dlq_topic, done, self.cfg.settle_timeout)
        )

    def finish(self, result: Result, *, settle: bool = True) -> Result:
        """Read back the last incarnation, build the reference, wait, compare, fill ``result``."""
        self.fed()
        last = self.read_input()
        incarnations = [*self.incarnations, last]
        ref = build_reference(
            incarnations,
            self.model,
            dedup_memory=self.settings.dedup_memory,
            max_future_ms=int(self.settings.max_future_seconds * 1000),
            partitions=self.cfg.partitions,
        )
        self.incarnations.append(last)
        behind = self.settle(ref) if settle else []
        self.settle_dlq(ref)
        inc = len(self.incarnations) - 1
        outputs = self.outputs + [(inc, m) for m in self.read_to_end(self.settings.output_topic)]
        dlq = self.dlq + [(inc, m) for m in self.read_to_end(self.settings.dlq_topic)]
        self.compare(ref, outputs, dlq, behind, result)
        return result

    def final_states(self, cids: Sequence[str]) -> dict[str, CustomerState | None]:
        raws = self.raw_records(cids)
        out: dict[str, CustomerState | None] = {}
        for cid, raw in zip(cids, raws, strict=True):
            rec = None if raw is None else decode_record(raw)
            out[cid] = (
                None if rec is None or rec.state is None else decode_state(rec.state, self.model)
            )
        return out

    def nps_actual(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for src in sorted(s.decode() for s in self.r.smembers(self.keys.nps_sources())):  # type: ignore[union-attr]
            topic, part = src.rsplit(":", 1)
            for k, v in self.r.hgetall(self.keys.nps_counts(topic, int(part))).items():  # type: ignore[union-attr]
                if k != b"_wm":
                    total[k.decode()] += int(v)
        return total

    def compare(
        self,
        ref: Reference,
        outputs: Sequence[tuple[int, Message]],
        dlq: Sequence[tuple[int, Message]],
        behind: Sequence[str],
        result: Result,
    ) -> None:
        cids = sorted(ref.states)
        actual = self.final_states(cids)
        st = check_states(ref, actual)
        ch = check_changes(ref, outputs)
        dl = check_dead_letters(ref, dlq, self.settings.input_topic)
        stray = self._stray_customers(set(cids))  # scored but not in the reference
        nps_got = self.nps_actual()
        nps_diff = {
            k: (nps_got.get(k, 0), ref.nps.get(k, 0))
            for k in set(nps_got) | set(ref.nps)
            if nps_got.get(k, 0) != ref.nps.get(k, 0)
        }
        result.events = ref.valid
        result.mismatches = (
            len(st.bad) + len(ch.wrong) + len(ch.spurious) + len(nps_diff) + len(dl.wrong) + stray
        )
        result.lost = st.lost + len(ch.missing) + len(dl.missing)
        result.dup_diff = len(ch.dup_diff)
        result.recovery_s = max(self.recoveries) if self.recoveries else None
        result.faults = self.faults
        result.ok = not (
            result.mismatches or result.lost or result.dup_diff or st.double or ch.bad_json
        )
        d = result.details
        d["customers"] = len(cids)
        d["changes (reference)"] = len(ref.changes)
        d["changes published (incl. republished)"] = f"{len(outputs)} ({ch.republished} again)"
        if ref.collisions:
            d["ids the clean pass itself repeats with other content"] = len(ref.collisions)
        d["events lost / counted twice"] = f"{st.lost} / {st.double}"
        d["customers whose state differs"] = len(st.bad)
        if st.bad:
            d["first state differences"] = {c: st.bad[c][:4] for c in sorted(st.bad)[:3]}
        d["change ids missing / spurious / wrong content"] = (
            f"{len(ch.missing)} / {len(ch.spurious)} / {len(ch.wrong)}"
        )
        d["NPS counters differing"] = dict(list(nps_diff.items())[:5]) if nps_diff else 0
        d["dead letters expected / missing / wrong / again"] = (
            f"{len(ref.dead)} / {len(dl.missing)} / {len(dl.wrong)} / {dl.again}"
        )
        if ref.dead:
            d["dead letters by reason"] = dict(Counter(r for r, _ in ref.dead.values()))
        if dl.truncated:
            d["dead letters with a truncated payload"] = dl.truncated
        if dl.wrong:
            d["first wrong dead letters"] = dl.wrong[:5]
        if stray:
            d["customers in Redis not in the reference"] = stray
        if behind:
            d["customers still behind at the deadline"] = f"{len(behind)} e.g. {list(behind)[:5]}"
        if ref.forwarded:
            d["valid messages on a foreign partition"] = ref.forwarded
        if ch.bad_json:
            d["unreadable output messages"] = ch.bad_json
        d["read-index entries disagreeing with states"] = self._index_disagreements(actual)
        logs = "\n".join(w.log_text() for w in self.workers)
        d["worker log: batch retries (world / exception)"] = (
            f"{len(re.findall(r'waits [0-9.]+s to retry', logs))} / "
            f"{len(re.findall(r'failed; retrying', logs))}"
        )
        d["worker log: fenced writes lost (customers)"] = sum(
            int(n) for n in re.findall(r"fenced writes lost for (\d+) customers", logs)
        )
        d["worker log: tracebacks"] = logs.count("Traceback (most recent call last)")
        if self.recoveries:
            d["recovery times (s)"] = [round(x, 1) for x in self.recoveries]

    def _stray_customers(self, known: set[str]) -> int:
        pattern = self.keys.state("*")
        stray = 0
        for key in self.r.scan_iter(match=pattern, count=1000):
            cid = key.decode().split(":state:{", 1)[1][:-1]
            if cid not in known and not cid.startswith("probe-"):
                stray += 1
        return stray

    def _index_disagreements(self, states: dict[str, CustomerState | None]) -> int:
        """Informational: tier counts and segment sets versus the final states."""
        bad = 0
        counts = self.r.hgetall(self.keys.tier_counts())
        for i, tier in enumerate(self.model.tiers):
            expected = sum(1 for s in states.values() if s is not None and s.tier == i)
            bad += abs(int(counts.get(tier.name.encode(), 0)) - expected)  # type: ignore[union-attr]
        for i, rule in enumerate(self.model.segments):
            key = self.keys.segment_members(rule.name)
            members = {m.decode() for m in self.r.zrange(key, 0, -1)}  # type: ignore[union-attr]
            expected = {c for c, s in states.items() if s is not None and s.segments >> i & 1}
            bad += len(members ^ expected)
        return bad


# =========================================================================== RSS sampler


class RssSampler:
    """Samples the workers' VmRSS every ``interval`` seconds in a thread."""

    def __init__(self, workers: Sequence[WorkerProc], interval: float = 0.2) -> None:
        self.workers = workers
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0
            for w in self.workers:
                if w.alive:
                    total += w.rss_kib() or 0
            if total:
                self.samples.append((time.monotonic(), total))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def max_between(self, t0: float, t1: float) -> int:
        return max((kib for t, kib in self.samples if t0 <= t <= t1), default=0)


# =========================================================================== scenarios


def _workload(cfg: Config, *, hostile: int, big: bool) -> tuple[list[Out], int, int]:
    valid = [as_out(d) for d in valid_events(cfg)]
    bad = [o for _, o in hostile_messages(hostile, cfg.seed, big=big)] if hostile else []
    model = load_model(Settings().model_path)
    for o in bad:  # the generator's own check: none of them is a valid event
        with contextlib.suppress(InvalidEvent):
            parse_event(raw_of(o.value), model, now_ms=now_ms())
            raise AssertionError(f"hostile message parses as valid: {raw_of(o.value)[:200]!r}")
    return interleave(valid, bad, cfg.seed), len(valid), len(bad)


def _sprinkle(cfg: Config) -> int:
    """Hostile messages mixed into the fault scenarios (the DLQ is checked under faults too)."""
    return max(10, cfg.events // 100)


def scenario_kill(cfg: Config) -> Result:
    """1: SIGKILL the only worker at random moments, restart it each time."""
    res = Result("1 worker kill -9")
    with Run("1-kill", cfg) as run:
        msgs, _, _ = _workload(cfg, hostile=_sprinkle(cfg), big=False)
        segments = split(msgs, cfg.kills + 1)
        w = run.add_worker("w1")
        w.launch()
        run.feed(segments[0])
        run.wait_progress(None, timeout=120, what="the worker's first writes")
        busy = 0
        for k in range(cfg.kills):
            main, tail = tail_split(segments[k + 1])
            run.feed(main)  # the kill lands while the worker works through this
            busy += run.random_moment()
            t0 = time.monotonic()
            w.kill()
            run.faults += 1
            base = run.progress()
            w.launch()
            run.feed(tail)  # work on every partition, to time the recovery by
            run.recovered(t0, base, what=f"progress after kill {k + 1}")
        res.details["kills while writes were going on"] = f"{busy}/{cfg.kills}"
        run.finish(res)
    return res


def _assigned(w: WorkerProc, topic: str) -> str | None:
    """The input partitions of ``w``'s latest assignment, from its log (None: none yet)."""
    text = w.log_text()
    launch = text.rfind("===== harness: launch")
    text = text[launch:]
    at = text.rfind("Setting newly assigned partitions")
    if at < 0:
        return None
    m = re.search(rf"\|\s*{re.escape(topic)}\s*\|\s*([^|]*?)\s*\|", text[at:])
    return m.group(1) if m else ""


def scenario_group(cfg: Config) -> Result:
    """2: two workers in a group, one killed and restarted; then the fencing check."""
    res = Result("2 group kill/rejoin + fencing")
    with Run("2-group", cfg) as run:
        topic = run.settings.input_topic
        msgs, _, _ = _workload(cfg, hostile=_sprinkle(cfg), big=False)
        seg = split(msgs, 5)
        a, b = run.add_worker("a"), run.add_worker("b")
        a.launch()
        run.feed(seg[0][:100])
        run.wait_progress(None, timeout=120, what="worker a's first writes")
        b.launch()
        run.wait(lambda: _assigned(b, topic), timeout=90, what="worker b joins and gets partitions")
        # kill b mid-run: a takes its partitions over
        main, tail = tail_split(seg[0][100:] + seg[1])
        run.feed(main)
        busy = run.random_moment()
        t0 = time.monotonic()
        b.kill()
        run.faults += 1
        base = run.progress()
        run.feed(tail)
        run.recovered(t0, base, what="progress on every partition after b was killed")
        # b comes back: the partitions are split again
        main, tail = tail_split(seg[2])
        run.feed(main)
        t0 = time.monotonic()
        b.launch()
        run.faults += 1
        run.wait(lambda: _assigned(b, topic), timeout=90, what="worker b rejoins with partitions")
        base = run.progress()
        run.feed(tail)
        run.recovered(t0, base, what="progress on every partition after b came back")
        res.details["b killed while writes were going on"] = busy
        res.details["assignment after rejoin (a / b)"] = (
            f"{_assigned(a, topic)} / {_assigned(b, topic)}"
        )
        _fencing(run, a, b, seg[3], res)
        run.feed(seg[4])
        run.finish(res)
        fenced = res.details.get("fencing: stale writes rejected (a's log)", 0)
        reread = res.details.get("fencing: stale batch re-read after a Redis timeout", 0)
        res.ok = res.ok and bool(res.details.get("fencing: monotone")) and fenced + reread > 0
    return res


def _partitions(text: str | None) -> set[int]:
    """``{0-3}`` / ``{1, 3}`` (faust's notation) as a set of partition numbers."""
    out: set[int] = set()
    for raw in (text or "").strip("{} ").split(","):
        part = raw.strip()
        if "-" in part:
            lo, hi = part.split("-")
            out.update(range(int(lo), int(hi) + 1))
        elif part:
            out.add(int(part))
    return out


def _fencing(run: Run, a: WorkerProc, b: WorkerProc, seg: list[Out], res: Result) -> None:
    """Freeze worker ``a`` in the middle of a batch, after it read its customers and before its
    writes ran (its Redis connections are killed while writes are paused); let ``b`` take a's
    partitions over and write newer state; then let ``a`` go on. ``a`` must re-read (or, had
    a write of it got through, lose it to the fence), and no customer's state may go back."""
    mine = _partitions(_assigned(a, run.settings.input_topic))
    if not mine:
        raise HarnessError("worker a owns no partition: no fencing check possible")
    batch, rest = [], []
    for o in seg:  # valid events of a's customers to a; everything else comes later
        cids = _customers_of([o])
        (batch if cids and run.owner(min(cids)) in mine else rest).append(o)
    cids = sorted(_customers_of(batch))
    if not cids:
        raise HarnessError("no event for a's partitions in the fencing segment")

    def gets() -> int:  # record reads: one MGET per batch (GET: the API, other tools)
        stats = run.r.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("get", "mget"))

    # Writes stall (reads go on): a reads the batch's customers and blocks at its first write
    # (due index, NPS counters or read index: all before the fenced state write).
    before_gets = gets()
    run.r.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
    try:
        run.feed(batch).result(60)
        # a has read its first batch's customers once GETs went up and then stopped: it
        # published that batch's changes and now blocks on its first write
        last = [before_gets, time.monotonic()]

        def reads_done() -> bool:
            n = gets()
            if n != last[0]:
                last[0], last[1] = n, time.monotonic()
            return n > before_gets and time.monotonic() - last[1] > 0.5

        run.wait(reads_done, timeout=30, what="worker a reading the batch", interval=0.02)
        a.send(signal.SIGSTOP)
        run.faults += 1
        stopped = time.monotonic()
        _drop_connections(run, a.pid)
    finally:
        run.r.execute_command("CLIENT", "UNPAUSE")
    first = run.sample(cids)
    samples = [first]

    # b notices that a is gone (session timeout), takes its partitions over and applies the
    # batch a is frozen in: every customer of the batch gets a newer version
    def b_wrote_them() -> bool:
        snap = run.sample(cids)
        samples.append(snap)
        return all(snap[c][0] > first[c][0] for c in cids)

    run.wait(
        b_wrote_them,
        timeout=90,
        what="b writing newer state for the customers a is frozen on",
        interval=0.2,
    )
    run.recoveries.append(time.monotonic() - stopped)
    frozen = time.monotonic() - stopped
    lost_before, retries_before = _lost_writes(a), _retries(a)
    a.send(signal.SIGCONT)
    run.faults += 1
    run.feed(rest)

    # a wakes up holding stale reads. Either its fenced writes lose (the CAS fence), or, when
    # it was frozen longer than the Redis socket timeout (10 s), its pending Redis call times
    # out first and the batch starts again from fresh reads: both must leave b's state alone.
    def fenced_or_reread() -> bool:
        samples.append(run.sample(cids))
        return _lost_writes(a) > lost_before or _retries(a) > retries_before

    run.wait(
        fenced_or_reread,
        timeout=60,
        what="a's stale batch fenced or re-read",
        fail=False,
        interval=0.2,
    )
    samples.append(run.sample(cids))
    mono = True
    last: dict[str, tuple[int, int, float]] = {}
    for snap in samples:
        for cid, now in snap.items():
            prev = last.get(cid)
            if prev is not None and any(x < y for x, y in zip(now, prev, strict=True)):
                mono = False
            last[cid] = now
    res.details["fencing: customers a was frozen on"] = len(cids)
    res.details["fencing: a frozen for (s)"] = round(frozen, 1)
    res.details["fencing: stale writes rejected (a's log)"] = _lost_writes(a) - lost_before
    res.details["fencing: stale batch re-read after a Redis timeout"] = _retries(a) - retries_before
    res.details["fencing: monotone"] = mono
    res.details["fencing: state samples"] = len(samples)


def _drop_connections(run: Run, pid: int) -> None:
    """Kill the Redis connections of worker ``pid`` (named ``engagement-scorer:<host>:<pid>``).

    A worker sends a batch's writes in one pipeline: while writes are paused, Redis would run
    what it already sent as soon as the pause ends, frozen or not. Killed connections take
    the unrun commands with them.
    """
    for client in run.r.client_list():
        if client.get("name", "").endswith(f":{pid}"):
            run.r.client_kill_filter(_id=client["id"])


def _customers_of(outs: Iterable[Out]) -> set[str]:
    found = set()
    for o in outs:
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
            doc = orjson.loads(o.value)
            cid = doc.get("customer_id") if isinstance(doc, dict) else None
            if isinstance(cid, str) and o.key == cid.encode():
                found.add(cid)
    return found


def _retries(w: WorkerProc) -> int:
    return len(re.findall(r"waits [0-9.]+s to retry", w.log_text()))


def _lost_writes(w: WorkerProc) -> int:
    return sum(int(n) for n in re.findall(r"fenced writes lost for (\d+)", w.log_text()))


def scenario_redis(cfg: Config, fsync: str) -> Result:
    """3: SIGKILL redis-server mid-run and restart it from its AOF.

    ``always``: a plain SIGKILL (every acknowledged write is fsynced: nothing may be lost).
    ``everysec``: a SIGKILL alone loses nothing either (the AOF is written to the page cache
    before Redis replies, and the page cache survives a process crash); what ``everysec`` can
    lose is what the kernel had not flushed when the *machine* went down: up to about a second
    of acknowledged writes. That is simulated: the AOF is copied, the worker goes on for a
    random 0.3-1 s, Redis is killed and restarted from the copy."""
    restarts = max(1, cfg.kills - 1) if fsync == "always" else max(1, cfg.kills // 2)
    name = "3a redis kill -9, AOF always" if fsync == "always" else "3b redis host crash, everysec"
    res = Result(name, measured_only=fsync != "always")
    with Run(f"3-redis-{fsync}", cfg, appendonly=True, appendfsync=fsync) as run:
        run.r.config_set("auto-aof-rewrite-percentage", 0)  # the AOF copies stay consistent
        msgs, _, _ = _workload(cfg, hostile=_sprinkle(cfg), big=False)
        seg = split(msgs, restarts + 1)
        w = run.add_worker("w1")
        w.launch()
        run.feed(seg[0])
        run.wait_progress(None, timeout=120, what="the worker's first writes")
        rolled_back = versions_back = 0
        aof = Path(run.redis_svc.argv[run.redis_svc.argv.index("--dir") + 1]) / "appendonlydir"
        for k in range(restarts):
            main, tail = tail_split(seg[k + 1])
            run.feed(main)
            run.random_moment()
            copy = aof.with_name(f"aof-copy-{k}")
            if fsync != "always":
                shutil.copytree(aof, copy)
                time.sleep(run.rng.uniform(0.3, 1.0))  # writes the crash will take away
            before = run.versions() or {}
            t0 = time.monotonic()
            run.redis_svc.kill()
            run.faults += 1
            if fsync != "always":
                shutil.rmtree(aof)
                shutil.move(copy, aof)
            run.redis_svc = restart_redis(run.redis_svc, kill=True)
            run.r.config_set("auto-aof-rewrite-percentage", 0)
            after = run.wait(run.versions, timeout=30, what="Redis answering after restart")
            back = {c: before[c] - after.get(c, 0) for c in before if after.get(c, 0) < before[c]}
            rolled_back += len(back)
            versions_back += sum(back.values())
            base = run.progress()
            run.feed(tail)
            run.recovered(t0, base, what=f"progress after Redis restart {k + 1}")
        res.details["customers whose record went back (seen at restart)"] = rolled_back
        res.details["record versions lost (seen at restart)"] = versions_back
        run.finish(res)
        if res.measured_only:
            # What holds even when Redis loses acknowledged writes: no crash and nothing
            # counted twice. Lost events, and ids re-published with other content (a batch
            # re-folded on an older state), are what is measured.
            twice = int(str(res.details["events lost / counted twice"]).split("/")[1])
            res.ok = res.error is None and twice == 0
    return res


def _rename_some(outs: Sequence[Out], fraction: float, prefix: str, seed: int) -> list[Out]:
    """``outs`` with a ``fraction`` of the customers renamed ``prefix + id`` (new customers)."""
    rng = random.Random(f"faults:{seed}:rename")
    chosen: dict[str, bool] = {}
    out = []
    for o in outs:
        cids = _customers_of([o])
        if not cids:
            out.append(o)
            continue
        cid = cids.pop()
        if chosen.setdefault(cid, rng.random() < fraction):
            doc = orjson.loads(o.value)
            doc["customer_id"] = prefix + cid
            out.append(as_out(doc))
        else:
            out.append(o)
    return out


def scenario_broker(cfg: Config) -> Result:
    """4: restart the (in-memory) Tansu broker mid-run: topics, data and offsets vanish.

    Phase 1 is applied completely, the broker is SIGKILLed and started again on the same port,
    the topics are provisioned again (``prepare``: a durable broker would still have them; an
    in-memory Tansu auto-creates topics with 4 partitions and no configs on first use, and
    acknowledges writes to topics that vanished without keeping them), then phase 2 comes:
    the rest of the log, with a quarter of its customers new."""
    res = Result("4 broker restart (Tansu in-memory)", measured_only=True)
    with Run("4-broker", cfg) as run:
        msgs, _, _ = _workload(cfg, hostile=_sprinkle(cfg), big=False)
        first, second = split(msgs, 2)
        second = _rename_some(second, 0.25, "new-", cfg.seed)
        w = run.add_worker("w1")
        w.launch()
        run.feed(first)
        run.wait_progress(None, timeout=120, what="the worker's first writes")
        run.fed()
        ref1 = build_reference(
            [run.read_input()],
            run.model,
            dedup_memory=run.settings.dedup_memory,
            max_future_ms=int(run.settings.max_future_seconds * 1000),
            partitions=cfg.partitions,
        )
        if run.settle(ref1):
            raise HarnessError("phase 1 was not applied before the broker restart")
        run.snapshot_topics()
        kept = run.sample(sorted(ref1.states))
        t0 = time.monotonic()
        port, log_dir = run.tansu.port, run.dir / "tansu"
        run.tansu.kill()
        run.faults += 1
        run.tansu = start_tansu(port, log_dir=log_dir)
        run.prepare()
        down = time.monotonic() - t0
        base = run.progress()
        run.feed(second)
        run.recovered(t0, base, what="progress on every partition after the broker restart")
        res.details["broker down incl. re-provisioning (s)"] = round(down, 2)
        run.finish(res)
        final = run.sample(sorted(ref1.states))
        went_back = [c for c in kept if final[c][1] < kept[c][1]]
        res.details["phase-1 state kept (customers whose events_applied went back)"] = len(
            went_back
        )
        warned = sum(
            int(n)
            for n in re.findall(r"skipped (\d+) message\(s\) as already applied", w.log_text())
        )
        res.details["worker log: skipped-as-applied warnings (messages)"] = warned
        twice = int(str(res.details["events lost / counted twice"]).split("/")[1])
        res.ok = (
            res.error is None
            and not went_back
            and twice == 0
            and res.dup_diff == 0
            and (res.lost == 0 or warned > 0)
        )
    return res


def scenario_poison(cfg: Config) -> Result:
    """5: hostile messages interleaved with valid ones; the worker must carry on."""
    res = Result("5 poison messages")
    with Run("5-poison", cfg) as run:
        msgs, _, n_bad = _workload(cfg, hostile=cfg.hostile, big=True)
        w = run.add_worker("w1")
        w.launch()
        t0 = time.monotonic()
        for chunk in split(msgs, max(1, len(msgs) // 20_000)):
            run.feed(chunk)
        run.wait_progress(None, timeout=120, what="the worker's first writes")
        run.faults = n_bad
        run.finish(res)
        res.details["hostile kinds"] = len({k for k, _ in hostile_messages(50, cfg.seed, big=True)})
        res.details["run time (s)"] = round(time.monotonic() - t0, 1)
        res.details["worker alive at the end"] = w.alive
    return res


def scenario_slow_redis(cfg: Config) -> Result:
    """6: Redis paused (CLIENT PAUSE) for seconds at a time while input keeps coming."""
    res = Result("6 slow redis (CLIENT PAUSE)")
    with Run("6-slow", cfg) as run:
        msgs, _, _ = _workload(cfg, hostile=_sprinkle(cfg), big=False)
        seg = split(msgs, len(cfg.pauses) + 1)
        w = run.add_worker("w1")
        w.launch()
        with RssSampler([w]) as rss:
            run.feed(seg[0])
            run.wait_progress(None, timeout=120, what="the worker's first writes")
            run.fed()
            warm = time.monotonic()
            baseline = 0
            for k, pause in enumerate(cfg.pauses):
                run.random_moment()
                if not baseline:
                    baseline = rss.max_between(warm, time.monotonic()) or (w.rss_kib() or 0)
                pauser = redis.Redis.from_url(run.redis_svc.url, socket_timeout=pause + 30)
                pauser.execute_command("CLIENT", "PAUSE", str(int(pause * 1000)), "ALL")
                run.faults += 1
                run.feed(seg[k + 1])  # the backlog grows while Redis is paused
                pauser.ping()  # answered once the pause is over
                pauser.close()
                t_end = time.monotonic()
                base = run.progress()
                run.recovered(t_end, base, what=f"progress after pause {k + 1}")
            t_run = time.monotonic()
            run.finish(res)
            peak = rss.max_between(warm, time.monotonic())
        res.details["worker RSS before pauses / peak (MiB)"] = (
            f"{baseline / 1024:.0f} / {peak / 1024:.0f}"
        )
        res.details["pauses (s)"] = list(cfg.pauses)
        res.details["catch-up after the last pause (s)"] = round(time.monotonic() - t_run, 1)
        bounded = peak <= baseline + 256 * 1024
        res.details["RSS bounded (peak <= before + 256 MiB)"] = bounded
        res.ok = res.ok and bounded
    return res


def _poison_state(cfg: Config) -> list[Result]:
    from tests.faults.poison_state import scenario_poison_state  # (it imports this module)

    return [scenario_poison_state(cfg)]


SCENARIOS: dict[str, Callable[[Config], list[Result]]] = {
    "kill": lambda c: [scenario_kill(c)],
    "group": lambda c: [scenario_group(c)],
    "redis": lambda c: [scenario_redis(c, "always"), scenario_redis(c, "everysec")],
    "broker": lambda c: [scenario_broker(c)],
    "poison": lambda c: [scenario_poison(c)],
    "slow": lambda c: [scenario_slow_redis(c)],
    "state": _poison_state,
}
ALIASES = {"1": "kill", "2": "group", "3": "redis", "4": "broker", "5": "poison", "6": "slow",
           "7": "state"}  # fmt: skip


def run_scenario(name: str, cfg: Config) -> list[Result]:
    """Run one scenario; an error becomes a failed row instead of an exception."""
    name = ALIASES.get(name, name)
    try:
        return SCENARIOS[name](cfg)
    except Exception as exc:  # noqa: BLE001 - a broken scenario is a row, not the end of the run
        where = traceback.extract_tb(exc.__traceback__)[-1]
        at = f" (at {Path(where.filename).name}:{where.lineno})"
        return [Result(name, error=f"{type(exc).__name__}{at}: {exc}"[:6000])]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.harness", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--scenario",
        default="all",
        help="all, or a comma-separated list of: 1|kill 2|group 3|redis 4|broker 5|poison "
        "6|slow 7|state",
    )
    parser.add_argument("--soak", action="store_true", help="soak sizes (else small defaults)")
    parser.add_argument("--events", type=int)
    parser.add_argument("--customers", type=int)
    parser.add_argument("--kills", type=int)
    parser.add_argument("--hostile", type=int)
    parser.add_argument("--partitions", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--pauses", help="comma-separated Redis pause lengths in seconds")
    parser.add_argument("--settle-timeout", type=float)
    parser.add_argument("--workdir", type=Path, help="logs and data (default: a temp dir)")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "events": args.events,
            "customers": args.customers,
            "kills": args.kills,
            "hostile": args.hostile,
            "partitions": args.partitions,
            "seed": args.seed,
            "settle_timeout": args.settle_timeout,
            "workdir": args.workdir,
        }.items()
        if v is not None
    }
    if args.pauses:
        overrides["pauses"] = tuple(float(x) for x in args.pauses.split(","))
    if args.soak:
        cfg = Config.soak(**overrides)
    else:
        cfg = Config()
        for k, v in overrides.items():
            setattr(cfg, k, v)
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    names = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    print(
        f"fault harness: scenarios {names}, events {cfg.events}, customers {cfg.customers}, "
        f"kills {cfg.kills}, hostile {cfg.hostile}, seed {cfg.seed}, workdir {cfg.workdir}",
        flush=True,
    )
    results: list[Result] = []
    for name in names:
        began = time.monotonic()
        rows = run_scenario(name, cfg)
        results += rows
        for r in rows:
            r.details["scenario wall time (s)"] = round(time.monotonic() - began, 1)
        print(format_table(rows), flush=True)
        print(format_details(rows), flush=True)
    print("\nSUMMARY")
    print(format_table(results))
    return 0 if all(r.ok and not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Scenario 9: erase and merge requests mixed into the workload while the worker is killed
(-9) and restarted.

The log comes in four phases, each fed once the one before is applied (so that the
reference, :mod:`tests.faults.lifecycle_ref`, is the only possible outcome):

* **A**: half the workload, every event of the customers the requests name, and an erase
  request in the middle of each erased customer's events (its later events are dropped);
  hostile messages sprinkled in. One kill -9 (or more) while it is processed.
* **B**: the rest of the workload (other customers) with merge requests FROM -> INTO
  (different partitions) at random places, each followed by late events of FROM (sent on
  to INTO); one of the merges is A -> B of a chain. A kill -9 amid the requests.
* **C**: B -> C, the chain's second merge.
* **D**: late events of the erased customers (dropped) and of A (through B to C).

The check is the harness's (states, every change id once with one content and no other,
NPS counters, dead letters, no stray records), with the exits and announcements the
requests publish in the reference, plus: no trace of an erased id in any key or value but
its keyed hash on the suppression list, and an alias for every merged-away customer.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass

import orjson

from scoring.lifecycle import MARKER, Request, encode_request
from stream_app.messages import expected_partition
from stream_app.store.keys import digest, escape
from tests.faults.config import DAY_MS, WORKLOAD_END_MS, Config, HarnessError, Result, now_ms
from tests.faults.lifecycle_ref import Lifecycle, build_lifecycle_reference
from tests.faults.outcome import compare, settle_dlq, settle_states
from tests.faults.reference import Reference
from tests.faults.run import Run
from tests.faults.workload import customers_of, make_workload, split, sprinkle, tail_split
from tests.support.kafka import Message, Out, Sent

SECRET = "faults-lifecycle-secret"


@dataclass
class Plan:
    """The four phases' messages and who the requests name."""

    phases: list[list[Out]]
    erased: list[str]
    merges: list[tuple[str, str]]  # (from, into), the chain's first merge last
    chain: tuple[str, str, str]


def _request(kind: str, cid: str, into: str | None = None) -> Out:
    r = Request(kind, f"req-{kind}-{cid}", cid, now_ms(), into)  # type: ignore[arg-type]
    return Out(encode_request(r), cid.encode())


def _late(cid: str, n: int, at: int) -> Out:
    doc = {"event_id": f"late-{cid}-{n}", "customer_id": cid, "type": "webinar_attended",
           "timestamp": at + n * 1000}  # fmt: skip
    return Out(orjson.dumps(doc), cid.encode())


def plan(cfg: Config) -> Plan:
    """The workload cut into phases with the requests placed (seeded)."""
    rng = random.Random(f"faults:{cfg.seed}:lifecycle")
    msgs, _, _ = make_workload(cfg, hostile=sprinkle(cfg), big=False)
    per: Counter[str] = Counter(c for o in msgs for c in customers_of([o]))
    rich = sorted(c for c, n in per.items() if n >= 6)
    rng.shuffle(rich)
    p = {c: expected_partition(c, cfg.partitions) for c in rich}
    chain = _distinct(rich, p, 3)
    taken = set(chain)
    merges: list[tuple[str, str]] = []
    for _ in range(3):
        src, dst = _distinct([c for c in rich if c not in taken], p, 2)
        merges.append((src, dst))
        taken |= {src, dst}
    erased = [c for c in rich if c not in taken][:3]
    involved = taken | set(erased)
    half = len(msgs) // 2
    first = [o for i, o in enumerate(msgs) if i < half or customers_of([o]) & involved]
    rest = [o for i, o in enumerate(msgs) if i >= half and not customers_of([o]) & involved]
    for cid in erased:  # in the middle of its own events
        at = [i for i, o in enumerate(first) if customers_of([o]) == {cid}]
        first.insert(at[len(at) // 2] + 1, _request("erase", cid))
    late_at = min(WORKLOAD_END_MS, now_ms() - DAY_MS) + 60_000
    merges.append((chain[0], chain[1]))
    for src, dst in merges:  # at random places, each followed by late events of FROM
        at = rng.randrange(len(rest) + 1)
        rest[at:at] = [_request("merge", src, dst), _late(src, 1, late_at)]
        rest.insert(rng.randrange(at + 2, len(rest) + 1), _late(src, 2, late_at))
    last = [_late(chain[0], 3, late_at), *(_late(c, 9, late_at) for c in erased)]
    phases = [first, rest, [_request("merge", chain[1], chain[2])], last]
    return Plan(phases, erased, merges, (chain[0], chain[1], chain[2]))


def _distinct(cands: list[str], p: dict[str, int], n: int) -> list[str]:
    """The first ``n`` of ``cands`` on pairwise different partitions."""
    out: list[str] = []
    for c in cands:
        if all(p[c] != p[x] for x in out):
            out.append(c)
            if len(out) == n:
                return out
    raise HarnessError(f"not {n} customers with enough events on different partitions")


class Phases:
    """What was fed in each phase, where it landed, and waiting for it to be applied."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.fed: list[list[tuple[list[Out], Future[list[Sent]]]]] = []

    def start(self) -> None:
        self.fed.append([])

    def feed(self, outs: list[Out]) -> None:
        self.fed[-1].append((outs, self.run.feed(outs)))

    def positions(self) -> list[set[tuple[int, int]]]:
        """Each phase's (partition, offset)s."""
        return [
            {(s.partition, s.offset) for _, fut in phase for s in fut.result(120)}
            for phase in self.fed
        ]

    def cut(self, log: list[Message]) -> list[list[Message]]:
        """The log read back, cut into the phases."""
        where = self.positions()
        phases = [[m for m in log if (m.partition, m.offset) in ps] for ps in where]
        if sum(map(len, phases)) != len(log):
            raise HarnessError("the log read back holds messages of no phase")
        return phases

    def messages(self) -> list[list[Message]]:
        """The phases as produced (before the log is read back)."""
        return [
            [
                Message(o.key, o.value, s.partition, s.offset)
                for outs, fut in phase
                for o, s in zip(outs, fut.result(120), strict=True)
            ]
            for phase in self.fed
        ]

    def reference(self, phases: list[list[Message]]) -> tuple[Reference, Lifecycle]:
        r = self.run
        return build_lifecycle_reference(
            phases, r.model, dedup_memory=r.settings.dedup_memory,
            max_future_ms=int(r.settings.max_future_seconds * 1000),
            partitions=r.cfg.partitions, incarnation=len(r.incarnations),
        )  # fmt: skip

    def settle(self, what: str) -> None:
        """Wait until the phases so far are applied: every state reaches the reference,
        every customer erased or merged away has no record."""
        ref, facts = self.reference(self.messages())
        behind = settle_states(self.run, ref)
        gone = sorted(facts.erased | set(facts.aliases))
        self.run.wait(lambda: not any(self.run.raw_records(gone)), timeout=60,
                      what=f"{what}: erased and merged-away records deleted")  # fmt: skip
        if behind:
            raise HarnessError(f"{what} not applied: {len(behind)} behind, e.g. {behind[:3]}")


def _kill_amid(
    run: Run, phases: Phases, outs: list[Out], kills: int, watch: list[str]
) -> list[int]:
    """Feed ``outs`` with ``kills`` kill -9 of the worker, each followed by a restart. A
    kill lands as soon as one more of the customers ``watch`` (those the phase's requests
    name) lost its record, i.e. amid the requests; returns, per kill, how many of them
    still had theirs."""
    w = run.workers[0]
    left: list[int] = []
    had: set[str] = set()
    keys = {c.encode() for c in watch}

    def gone() -> int:
        """How many of ``watch`` had a record and have none now."""
        raws = run.raw_records(watch)
        had.update(c for c, raw in zip(watch, raws, strict=True) if raw is not None)
        return sum(1 for c, raw in zip(watch, raws, strict=True) if c in had and raw is None)

    for part in split(outs, kills) if kills else [outs]:
        if not kills:
            phases.feed(part)
            break
        main, tail = tail_split(part)
        phases.feed(main)
        done = gone()
        asks = any(o.value is not None and MARKER in o.value and o.key in keys for o in main)
        if not asks or not run.wait(lambda d=done: gone() > d, timeout=10, what="a request",
                                    fail=False, interval=0.002):  # fmt: skip
            run.random_moment()
        left.append(sum(1 for raw in run.raw_records(watch) if raw is not None))
        t0 = time.monotonic()
        w.kill()
        run.faults += 1
        before = run.writes() or 0
        w.launch()
        phases.feed(tail)
        run.wait(lambda b=before: (run.writes() or 0) > b, timeout=120,
                 what="writes after a restart")  # fmt: skip
        run.recoveries.append(time.monotonic() - t0)
    return left


def scenario_lifecycle(cfg: Config) -> Result:
    """9: erase and merge requests in the workload, the worker killed -9 and restarted."""
    res = Result("9 erase/merge + kill -9")
    small = dataclasses.replace(cfg, events=max(600, cfg.events // 3))
    with Run("9-lifecycle", small) as run:
        run.env["ENGAGEMENT_SUPPRESSION_SECRET"] = SECRET
        p = plan(small)
        phases = Phases(run)
        run.add_worker("w1").launch()
        kills_a = cfg.kills // 2
        phases.start()
        left = _kill_amid(run, phases, p.phases[0], kills_a, p.erased)
        phases.settle("phase A (events, erases)")
        phases.start()
        froms = [src for src, _ in p.merges]
        left += _kill_amid(run, phases, p.phases[1], max(1, cfg.kills - kills_a), froms)
        phases.settle("phase B (merges)")
        for name, outs in (("phase C (the chain)", p.phases[2]), ("phase D (late)", p.phases[3])):
            phases.start()
            phases.feed(outs)
            phases.settle(name)
        res.details["requests left at each kill (of 3 erases, then 4 merges)"] = left
        _finish(run, phases, p, res)
    return res


def _finish(run: Run, phases: Phases, p: Plan, res: Result) -> None:
    """The harness's comparison on the whole log, plus the lifecycle's own checks."""
    log = run.read_input()
    ref, facts = phases.reference(phases.cut(log))
    run.incarnations.append(log)
    behind = settle_states(run, ref)
    settle_dlq(run, ref)
    outputs = [(0, m) for m in run.read_to_end(run.settings.output_topic)]
    dlq = [(0, m) for m in run.read_to_end(run.settings.dlq_topic)]
    compare(run, ref, outputs, dlq, behind, result=res)
    traces = {c: t for c in sorted(facts.erased) if (t := _traces(run, c))}
    secret = SECRET.encode()
    unsuppressed = [
        c for c in facts.erased if run.r.hget(run.keys.suppression(c), digest(secret, c)) is None
    ]
    aliases = {src: run.r.get(run.keys.alias(src)) for src in facts.aliases}
    wrong = [s for s, got in aliases.items() if got != facts.aliases[s].encode()]
    res.mismatches += len(traces) + len(unsuppressed) + len(wrong)
    res.ok = res.ok and not (traces or unsuppressed or wrong)
    d = res.details
    d["lifecycle: erased / merged away (chain A->B->C incl.)"] = (
        f"{len(facts.erased)} / {len(facts.aliases)}"
    )
    d["lifecycle: events dropped as erased / sent on to a survivor (reference)"] = (
        f"{facts.suppressed} / {facts.aliased}"
    )
    d["lifecycle: announcements and exits among the reference changes"] = facts.published
    d["lifecycle: erased ids with a trace / not suppressed / wrong aliases"] = (
        f"{len(traces)} / {len(unsuppressed)} / {len(wrong)}"
    )
    if traces:
        d["lifecycle: first traces"] = dict(list(traces.items())[:3])


def _traces(run: Run, cid: str) -> list[str]:
    """Every key of the deployment whose name or content holds ``cid``."""
    needle, tag = cid.encode(), f"{{{escape(cid)}}}".encode()
    found = []
    for key in run.r.scan_iter(match=run.keys.all_pattern(), count=1000):
        kind = run.r.type(key).decode()  # type: ignore[union-attr]
        values: list[bytes] = []
        if kind == "string":
            values = [run.r.get(key) or b""]  # type: ignore[list-item]
        elif kind == "hash":
            values = [x for kv in run.r.hgetall(key).items() for x in kv]  # type: ignore[union-attr]
        elif kind in ("zset", "set"):
            values = list(run.r.zrange(key, 0, -1) if kind == "zset" else run.r.smembers(key))  # type: ignore[arg-type]
        if tag in key or any(needle in v for v in values):
            found.append(f"{key!r}")
    return found

"""The end of a scenario: wait until the worker settled, then compare what it left with the
reference and fill the result's row and details."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Sequence

import orjson
import redis

from scoring import CustomerState, decode_state
from stream_app.store.records import decode_record
from tests.faults.config import Result
from tests.faults.reference import (
    Reference,
    build_reference,
    check_changes,
    check_dead_letters,
    check_states,
)
from tests.faults.run import Run
from tests.support.kafka import Message, read_until


def settle_states(run: Run, ref: Reference) -> list[str]:
    """Wait until every customer's ``events_applied`` reaches the reference (deadline:
    ``settle_timeout``); return the customers still behind."""
    cache: dict[str, tuple[bytes, int]] = {}  # cid -> (fence token, events_applied)
    wanted = {c: s.events_applied for c, s in ref.states.items()}
    cids = sorted(wanted)

    def behind() -> list[str]:
        try:
            raws = run.raw_records(cids)
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
                applied = decode_state(rec.state, run.model).events_applied if rec.state else 0
                hit = cache[cid] = (version, applied)
            if hit[1] < wanted[cid]:
                late.append(cid)
        return late

    # Give up early once Redis has seen no write for ``quiet`` seconds: nothing is moving
    # any more (the measured scenarios, where events are lost, end here).
    quiet = run.cfg.quiet
    last = [run.writes(), time.monotonic()]

    def done() -> bool:
        if not behind():
            return True
        w = run.writes()
        if w != last[0]:
            last[0], last[1] = w, time.monotonic()
        return time.monotonic() - last[1] > quiet

    run.wait(
        done,
        timeout=run.cfg.settle_timeout,
        what="every customer's events applied",
        fail=False,
        interval=0.5,
    )
    return behind()


def settle_dlq(run: Run, ref: Reference) -> None:
    """Wait (deadline) until the DLQ holds every expected dead letter of this incarnation."""
    inc = len(run.incarnations) - 1
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
        return want <= seen or time.monotonic() - moved[0] > run.cfg.quiet

    asyncio.run(read_until(run.tansu.url, run.settings.dlq_topic, done, run.cfg.settle_timeout))


def finish(run: Run, result: Result, *, settle: bool = True) -> Result:
    """Read back the last incarnation, build the reference, wait, compare, fill ``result``."""
    run.fed()
    last = run.read_input()
    incarnations = [*run.incarnations, last]
    ref = build_reference(
        incarnations,
        run.model,
        dedup_memory=run.settings.dedup_memory,
        max_future_ms=int(run.settings.max_future_seconds * 1000),
        partitions=run.cfg.partitions,
    )
    run.incarnations.append(last)
    behind = settle_states(run, ref) if settle else []
    settle_dlq(run, ref)
    inc = len(run.incarnations) - 1
    outputs = run.outputs + [(inc, m) for m in run.read_to_end(run.settings.output_topic)]
    dlq = run.dlq + [(inc, m) for m in run.read_to_end(run.settings.dlq_topic)]
    compare(run, ref, outputs, dlq, behind, result=result)
    return result


def final_states(run: Run, cids: Sequence[str]) -> dict[str, CustomerState | None]:
    raws = run.raw_records(cids)
    out: dict[str, CustomerState | None] = {}
    for cid, raw in zip(cids, raws, strict=True):
        rec = None if raw is None else decode_record(raw)
        out[cid] = None if rec is None or rec.state is None else decode_state(rec.state, run.model)
    return out


def nps_actual(run: Run) -> Counter[str]:
    total: Counter[str] = Counter()
    for src in sorted(s.decode() for s in run.r.smembers(run.keys.nps_sources())):  # type: ignore[union-attr]
        topic, part = src.rsplit(":", 1)
        for k, v in run.r.hgetall(run.keys.nps_counts(topic, int(part))).items():  # type: ignore[union-attr]
            if k != b"_wm":
                total[k.decode()] += int(v)
    return total


def compare(
    run: Run,
    ref: Reference,
    outputs: Sequence[tuple[int, Message]],
    dlq: Sequence[tuple[int, Message]],
    behind: Sequence[str],
    *,
    result: Result,
) -> None:
    cids = sorted(ref.states)
    actual = final_states(run, cids)
    st = check_states(ref, actual, run.model)
    ch = check_changes(ref, outputs)
    dl = check_dead_letters(ref, dlq, run.settings.input_topic)
    stray = stray_customers(run, set(cids))  # scored but not in the reference
    nps_got = nps_actual(run)
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
    result.recovery_s = max(run.recoveries) if run.recoveries else None
    result.faults = run.faults
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
    d["read-index entries disagreeing with states"] = index_disagreements(run, actual)
    logs = "\n".join(w.log_text() for w in run.workers)
    d["worker log: batch retries (world / exception)"] = (
        f"{len(re.findall(r'waits [0-9.]+s to retry', logs))} / "
        f"{len(re.findall(r'failed; retrying', logs))}"
    )
    d["worker log: fenced writes lost (customers)"] = sum(
        int(n) for n in re.findall(r"fenced writes lost for (\d+) customers", logs)
    )
    d["worker log: tracebacks"] = logs.count("Traceback (most recent call last)")
    if run.recoveries:
        d["recovery times (s)"] = [round(x, 1) for x in run.recoveries]


def stray_customers(run: Run, known: set[str]) -> int:
    pattern = run.keys.state("*")
    stray = 0
    for key in run.r.scan_iter(match=pattern, count=1000):
        cid = key.decode().split(":state:{", 1)[1][:-1]
        if cid not in known and not cid.startswith("probe-"):
            stray += 1
    return stray


def index_disagreements(run: Run, states: dict[str, CustomerState | None]) -> int:
    """Informational: tier counts and segment sets versus the final states."""
    bad = 0
    counts = run.r.hgetall(run.keys.tier_counts())
    for i, tier in enumerate(run.model.tiers):
        expected = sum(1 for s in states.values() if s is not None and s.tier == i)
        bad += abs(int(counts.get(tier.name.encode(), 0)) - expected)  # type: ignore[union-attr]
    for i, rule in enumerate(run.model.segments):
        key = run.keys.segment_members(rule.name)
        members = {m.decode() for m in run.r.zrange(key, 0, -1)}  # type: ignore[union-attr]
        expected = {c for c, s in states.items() if s is not None and s.segments >> i & 1}
        bad += len(members ^ expected)
    return bad

"""Scenario 2: two workers in one group, one killed and rejoining; then the fencing check, a
worker frozen mid-batch while the other takes its partitions over."""

from __future__ import annotations

import re
import signal
import time

from tests.faults.config import Config, HarnessError, Result
from tests.faults.outcome import finish
from tests.faults.run import Run
from tests.faults.services import WorkerProc, lost_writes, retries
from tests.faults.workload import customers_of, make_workload, split, sprinkle, tail_split
from tests.support.kafka import Out


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
        msgs, _, _ = make_workload(cfg, hostile=sprinkle(cfg), big=False)
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
        finish(run, res)
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
        cids = customers_of([o])
        (batch if cids and run.owner(min(cids)) in mine else rest).append(o)
    cids = sorted(customers_of(batch))
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
    lost_before, retries_before = lost_writes(a), retries(a)
    a.send(signal.SIGCONT)
    run.faults += 1
    run.feed(rest)

    # a wakes up holding stale reads. Either its fenced writes lose (the CAS fence), or, when
    # it was frozen longer than the Redis socket timeout (10 s), its pending Redis call times
    # out first and the batch starts again from fresh reads: both must leave b's state alone.
    def fenced_or_reread() -> bool:
        samples.append(run.sample(cids))
        return lost_writes(a) > lost_before or retries(a) > retries_before

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
    res.details["fencing: stale writes rejected (a's log)"] = lost_writes(a) - lost_before
    res.details["fencing: stale batch re-read after a Redis timeout"] = retries(a) - retries_before
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

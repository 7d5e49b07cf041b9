"""The scenarios (one fault each), by name and number, and running one of them."""

from __future__ import annotations

import re
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import redis

from stream_app.devkit.stack import restart_redis, start_tansu
from tests.faults.config import Config, HarnessError, Result
from tests.faults.group import scenario_group
from tests.faults.lifecycle import scenario_lifecycle
from tests.faults.outcome import finish, settle_states
from tests.faults.poison_state import scenario_poison_state
from tests.faults.reference import build_reference
from tests.faults.run import Run
from tests.faults.services import RssSampler
from tests.faults.workload import (
    hostile_messages,
    make_workload,
    rename_some,
    split,
    sprinkle,
    tail_split,
)


def scenario_kill(cfg: Config) -> Result:
    """1: SIGKILL the only worker at random moments, restart it each time."""
    res = Result("1 worker kill -9")
    with Run("1-kill", cfg) as run:
        msgs, _, _ = make_workload(cfg, hostile=sprinkle(cfg), big=False)
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
        finish(run, res)
    return res


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
        msgs, _, _ = make_workload(cfg, hostile=sprinkle(cfg), big=False)
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
        finish(run, res)
        if res.measured_only:
            # What holds even when Redis loses acknowledged writes: no crash and nothing
            # counted twice. Lost events, and ids re-published with other content (a batch
            # re-folded on an older state), are what is measured.
            twice = int(str(res.details["events lost / counted twice"]).split("/")[1])
            res.ok = res.error is None and twice == 0
    return res


def scenario_broker(cfg: Config) -> Result:
    """4: restart the (in-memory) Tansu broker mid-run: topics, data and offsets vanish.

    Phase 1 is applied completely, the broker is SIGKILLed and started again on the same port,
    the topics are provisioned again (``prepare``: a durable broker would still have them; an
    in-memory Tansu auto-creates topics with 4 partitions and no configs on first use, and
    acknowledges writes to topics that vanished without keeping them), then phase 2 comes:
    the rest of the log, with a quarter of its customers new."""
    res = Result("4 broker restart (Tansu in-memory)", measured_only=True)
    with Run("4-broker", cfg) as run:
        msgs, _, _ = make_workload(cfg, hostile=sprinkle(cfg), big=False)
        first, second = split(msgs, 2)
        second = rename_some(second, 0.25, "new-", cfg.seed)
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
        if settle_states(run, ref1):
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
        finish(run, res)
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
        msgs, _, n_bad = make_workload(cfg, hostile=cfg.hostile, big=True)
        w = run.add_worker("w1")
        w.launch()
        t0 = time.monotonic()
        for chunk in split(msgs, max(1, len(msgs) // 20_000)):
            run.feed(chunk)
        run.wait_progress(None, timeout=120, what="the worker's first writes")
        run.faults = n_bad
        finish(run, res)
        res.details["hostile kinds"] = len({k for k, _ in hostile_messages(50, cfg.seed, big=True)})
        res.details["run time (s)"] = round(time.monotonic() - t0, 1)
        res.details["worker alive at the end"] = w.alive
    return res


def scenario_slow_redis(cfg: Config) -> Result:
    """6: Redis paused (CLIENT PAUSE) for seconds at a time while input keeps coming."""
    res = Result("6 slow redis (CLIENT PAUSE)")
    with Run("6-slow", cfg) as run:
        msgs, _, _ = make_workload(cfg, hostile=sprinkle(cfg), big=False)
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
            finish(run, res)
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


SCENARIOS: dict[str, Callable[[Config], list[Result]]] = {
    "kill": lambda c: [scenario_kill(c)],
    "group": lambda c: [scenario_group(c)],
    "redis": lambda c: [scenario_redis(c, "always"), scenario_redis(c, "everysec")],
    "broker": lambda c: [scenario_broker(c)],
    "poison": lambda c: [scenario_poison(c)],
    "slow": lambda c: [scenario_slow_redis(c)],
    "state": lambda c: [scenario_poison_state(c)],
    "lifecycle": lambda c: [scenario_lifecycle(c)],
}
ALIASES = {"1": "kill", "2": "group", "3": "redis", "4": "broker", "5": "poison", "6": "slow",
           "7": "state", "9": "lifecycle"}  # fmt: skip


def run_scenario(name: str, cfg: Config) -> list[Result]:
    """Run one scenario; an error becomes a failed row instead of an exception."""
    name = ALIASES.get(name, name)
    try:
        return SCENARIOS[name](cfg)
    except Exception as exc:  # noqa: BLE001 - a broken scenario is a row, not the end of the run
        where = traceback.extract_tb(exc.__traceback__)[-1]
        at = f" (at {Path(where.filename).name}:{where.lineno})"
        return [Result(name, error=f"{type(exc).__name__}{at}: {exc}"[:6000])]

"""Decay exits right for every producer: watermarks through the by-customer topic.

One generated stream (simulated customers over a month, with redeliveries, swapped
neighbours and hostile messages) is produced with confluent-kafka three ways: keyed with
Java's murmur2 (``partitioner=murmur2_random``), keyed with its default partitioner, and
unkeyed; each way under its own customer names and its own month (the months in time
order, so every input partition is in event-time order). The whole backlog is on the
input topic before the workers start. Compared with one offline pass through the pure
core, over each customer's events in the order the scorer meets them and then every
decay crossing up to now, the output must hold exactly the change ids and contents of
that pass, and every final state must equal it. With 1 and 2 workers, with the
by-customer path slowed, and with a kill -9 while the default partitioner's stream is
being processed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from scoring import advance, next_crossing
from stream_app.devkit.stack import LocalService
from stream_app.kafka.topics import prepare
from stream_app.messages import expected_partition
from stream_app.settings import Settings
from stream_app.store.progress import parse_progress
from stream_app.worker.watermarks import forwarded_from, is_control
from tests.integration import streams
from tests.integration.decay.helpers import Tail
from tests.integration.streams import DAY_MS, KINDS, Produced
from tests.integration.workers import (
    Worker,
    assigned,
    event,
    launch,
    now_ms,
    relaunch,
    start_worker,
    stop_all,
    worker_env,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4
#: Each kind's month: 60 days apart, ending more than two years before now, so that every
#: crossing of the default model has happened by now (checked).
FIRST_DAY_MS = (int(time.time() * 1000) // DAY_MS - 1000) * DAY_MS

#: Small batches and a fast tick: the backlog takes many batches, with sweeps in between.
PACE = {"ENGAGEMENT_BATCH_SIZE": "20", "ENGAGEMENT_DECAY_TICK_MS": "50"}


@dataclass
class Deployment:
    """Workers of one consumer group and key prefix, and the streams they were given."""

    workers: list[Worker]
    produced: dict[str, list[Produced]]
    raws: dict[str, list[bytes]]

    @property
    def first(self) -> Worker:
        return self.workers[0]


def deploy(
    tansu: LocalService,
    redis_server: LocalService,
    workdir: Path,
    *,
    kinds: Sequence[str],
    workers: int = 1,
    module: str = "stream_app.cli",
    **extra: str,
) -> Deployment:
    """Produce each kind's stream, then start ``workers`` processes of one deployment."""
    extra = {**PACE, **extra}
    env = worker_env(tansu, redis_server, workdir, name="wm", partitions=PARTITIONS, **extra)
    settings = Settings.from_env(env)
    asyncio.run(prepare(settings, timeout_s=30.0))
    produced, raws = {}, {}
    for kind in kinds:
        start = FIRST_DAY_MS + KINDS.index(kind) * 60 * DAY_MS
        raws[kind] = streams.generated_stream(f"{kind}-", start_ms=start)
        produced[kind] = streams.produce_ck(tansu.url, settings.input_topic, raws[kind], kind)
    started = []
    for i in range(workers):
        own = {**env, "ENGAGEMENT_DATA_DIR": str(workdir / f"faust-{i}")}
        log = workdir / f"worker-{i}.log"
        started.append(launch(f"wm{i}", own, settings, log, redis_server.url, module=module))
    return Deployment(started, produced, raws)


def wait_applied(w: Worker, counts: dict[str, int], timeout: float = 120.0) -> None:
    """Until every customer's stored ``events_applied`` reaches the offline pass's."""
    ids = sorted(counts)

    def behind() -> list[str]:
        raws = w.redis.mget([w.keys.state(c) for c in ids])
        late = []
        for cid, raw in zip(ids, raws, strict=True):  # type: ignore[arg-type]
            state = None if raw is None else w.state(cid)
            if state is None or state.events_applied < counts[cid]:
                late.append(cid)
        return late

    w.wait(lambda: not behind(), timeout=timeout, what=f"every event applied: {behind()[:3]}")


def check(d: Deployment, label: str) -> dict[str, str]:
    """Compare the deployment's output and states with the offline pass; per-kind figures."""
    w, model = d.first, d.first.model
    by_stream = {
        k: streams.fold_in_order(streams.stream_order(r), model, streams.now_ms())
        for k, r in d.raws.items()
    }
    wait_applied(w, {c: n for ref in by_stream.values() for c, n in ref.applied.items()})
    done = streams.now_ms()
    rekeyed = streams.read_by_customer_sync(
        w.brokers, w.settings.by_customer_topic, PARTITIONS, done
    )
    horizon = streams.now_ms()
    refs = {
        kind: streams.fold_in_order(streams.scorer_order(prod, rekeyed, PARTITIONS), model, horizon)
        for kind, prod in d.produced.items()
    }
    for ref in refs.values():  # nothing left to cross for a day: "up to now" is well defined
        for cid, state in ref.states.items():
            at = next_crossing(state, model)
            assert at is None or at > horizon + DAY_MS, f"{cid} crosses at {at}"
    expected = set().union(*(ref.docs() for ref in refs.values()))
    sources = Counter(forwarded_from(m.headers) for m in rekeyed if not is_control(m.headers))
    resent = sum(n - 1 for n in sources.values())

    def output() -> tuple[set[bytes], set[str]]:
        return streams.published_docs(w.read_all(w.settings.output_topic))

    deadline = time.monotonic() + 30.0
    while not expected <= (published := output())[0] and time.monotonic() < deadline:
        time.sleep(0.5)
    docs, clashes = published
    figures = {}
    for kind, ref in refs.items():
        mine = {doc for doc in docs if f'"customer_id":"{kind}-'.encode() in doc}
        want = ref.docs()
        tiers = lambda s: sum(b'"kind":"tier"' in x for x in s)  # noqa: E731
        decay = lambda s: sum(b'"cause":"decay"' in x for x in s)  # noqa: E731
        states = w.states(ref.states)
        wrong = [
            cid
            for cid, want_state in ref.states.items()
            if (got := states[cid]) is None or advance(got, cid, horizon, model)[0] != want_state
        ]
        reordered = sum(ref.order[c] != by_stream[kind].order.get(c) for c in ref.order)
        shares = Counter(
            streams.forwarded(p, cid, PARTITIONS)
            for p in d.produced[kind]
            if (cid := streams.customer_of(p.value)) is not None
        )
        figures[kind] = (
            f"tier changes {tiers(mine & want)}/{tiers(want)} expected published "
            f"({tiers(mine - want)} extra), all changes {len(mine & want)}/{len(want)} "
            f"({decay(want)} by decay, {len(mine - want)} extra), states "
            f"{len(ref.states) - len(wrong)}/{len(ref.states)} equal, forwarded "
            f"{shares[True]}/{shares[True] + shares[False]}, customers met in another order "
            f"than produced {reordered}"
        )
        assert mine == want and not wrong, (
            f"{label} {kind}: {figures[kind]}\nmissing {sorted(want - mine)[:3]}\n"
            f"extra {sorted(mine - want)[:3]}\nstates differ: {wrong[:5]}"
        )
        if kind != "unkeyed":  # keyed: every customer's events on one partition, in order
            assert reordered == 0
    assert not clashes, f"ids published with two contents: {sorted(clashes)[:3]}"
    dead = {
        (m.json()["source"]["partition"], m.json()["source"]["offset"])
        for m in w.read_all(w.settings.dlq_topic)
    }
    hostile = {
        (p.partition, p.offset)
        for prod in d.produced.values()
        for p in prod
        if p.value in streams.HOSTILE
    }
    assert dead == hostile, "the dead letters are the hostile messages, and nothing else"
    print(
        f"{label} ({resent} forwards sent again): "
        + "; ".join(f"{k}: {v}" for k, v in figures.items())
    )
    return figures


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


@pytest.mark.parametrize("workers", [1, 2])
def test_every_producer_gives_the_changes_and_states_of_one_offline_pass(
    tansu: LocalService, redis_server: LocalService, workdir: Path, workers: int
) -> None:
    d = deploy(tansu, redis_server, workdir, kinds=KINDS, workers=workers)
    try:
        check(d, f"{workers} worker(s)")
        owned = [assigned(w) for w in d.workers]
        assert all(owned), f"a worker never got partitions: {owned}"
    finally:
        problems = stop_all(d.workers)
    assert not problems, problems


def test_a_slow_by_customer_path_holds_the_decay_exits_back(
    tansu: LocalService, redis_server: LocalService, workdir: Path
) -> None:
    """Forwards and watermarks reach the by-customer topic 3 s late: the input's progress
    runs to the end of the backlog at once, the sweep must wait for the watermarks."""
    d = deploy(
        tansu, redis_server, workdir, kinds=("default", "unkeyed"),
        module="tests.integration.slowpath", SLOWPATH_DELAY_S="3",
    )  # fmt: skip
    try:
        check(d, "by-customer path 3 s slow")
    finally:
        problems = stop_all(d.workers)
    assert not problems, problems


def test_a_kill_9_while_forwarding_gives_the_same(
    tansu: LocalService, redis_server: LocalService, workdir: Path
) -> None:
    d = deploy(tansu, redis_server, workdir, kinds=("default",), ENGAGEMENT_BATCH_SIZE="10")
    w = d.first
    try:
        w.wait(lambda: len(w.redis.keys(w.keys.state("*"))) >= 5, timeout=60.0, what="some writes")
        os.kill(w.process.pid, signal.SIGKILL)
        w.process.wait()
        written = len(w.redis.keys(w.keys.state("*")))
        w.redis.close()
        log = w.log_path.with_name("again.log")
        again = launch("wm-again", w.env, w.settings, log, redis_server.url)
        d.workers = [again]
        print(f"kill -9 after {written} customers written")
        check(d, "kill -9 during the default partitioner's stream")
    finally:
        problems = stop_all(d.workers)
    assert not problems, problems


MINUTE_MODEL = """
[model]
name = "minute"
version = 1
half_life_days = 0.0005208333333333333   # 45 s

[tiers]
cold = 0
warm = 20
hot = 60
hysteresis = 0.1

[events.webinar_attended]
points = 10
dimension = "content"
"""


def test_a_restart_on_an_idle_deployment_fires_a_due_crossing_on_time(
    tansu: LocalService, redis_server: LocalService, workdir: Path
) -> None:
    """Seven webinars (70 points, hot) reach a caught-up worker, which then stops. A new
    process starts with no new event: it goes on from the progress kept in Redis and
    publishes hot -> warm (at +16.8 s) within 2 s of its time."""
    model_file = workdir / "minute.toml"
    model_file.write_text(MINUTE_MODEL, "utf-8")
    w = start_worker(tansu, redis_server, workdir, name="idle", model_file=model_file)
    again: Worker | None = None
    try:
        w.wait_ready()
        cid, t0 = "idle-customer", int(streams.now_ms())
        docs = [event(f"w{i}", cid, "webinar_attended", t0) for i in range(7)]
        sent = w.produce_events(docs)
        w.wait_processed({cid: sent[-1]})
        state = w.state(cid)
        assert state is not None and state.tier_name(w.model) == "hot"
        crossing = next_crossing(state, w.model)
        assert crossing is not None and crossing - t0 > 15_000
        owner = expected_partition(cid, w.settings.partitions)

        def saved() -> bool:
            stored = parse_progress(w.redis.hgetall(w.keys.progress(owner)))  # type: ignore[arg-type]
            return len(stored.upstream) == PARTITIONS and (stored.input_ms or 0) >= t0

        w.wait(saved, timeout=10.0, what="progress saved")
        assert w.stop(), "the first process did not stop cleanly"
        stored = parse_progress(w.redis.hgetall(w.keys.progress(owner)))
        assert stored.input_offset == sent[-1].offset and stored.input_ms is not None
        assert stored.input_ms >= t0 and set(stored.upstream) == set(range(PARTITIONS))
        again = relaunch(w, "idle-again")
        with Tail(again.brokers, again.settings.output_topic) as tail:
            ready = again.wait(
                lambda: assigned(again) and time.time() * 1000,
                timeout=crossing / 1000 - time.time(),
                what="the new process owns the partitions before the crossing",
            )
            want = advance(state, cid, crossing, w.model)[1]
            assert [(c.from_tier, c.to_tier) for c in want] == [("hot", "warm")]
            doc = streams.change_doc(want[0])

            def received() -> float | None:
                for at, m in tail.items():
                    if streams.published_docs([m])[0] == {doc}:
                        return at
                return None

            at = again.wait(received, timeout=(crossing - now_ms()) / 1000 + 10, what="hot->warm")
        lag = at - crossing
        print(
            f"restart: owned the partitions {crossing - ready:.0f} ms before the crossing, "
            f"published it {lag:.0f} ms after"
        )
        assert 0 <= lag < 2_000
    finally:
        problems = stop_all([x for x in (w, again) if x is not None and x.process.poll() is None])
    assert not problems, problems

"""One scenario's run: its own Tansu and redis-server, the workers, feeding the input topic,
observing progress in Redis, and reading the topics back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import random
import re
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
import redis

from scoring import decode_state, load_model
from stream_app.devkit.stack import LocalService, start_redis, start_tansu
from stream_app.kafka.topics import prepare
from stream_app.messages import expected_partition
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.records import decode_record
from tests.faults.config import SWEEP_OFF_MS, Config, HarnessError
from tests.faults.services import WorkerProc
from tests.integration.workers import worker_env
from tests.support.kafka import Message, Out, Sent, produce, read_to_end, read_until

T = TypeVar("T")


class Run:
    """Services, workers, feeding and observation of one scenario (its end: ``outcome``)."""

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
        """Everything in ``topic`` (not consumed by the worker), markers left out."""
        n = self.settings.partitions
        got = read_to_end(self.tansu.url, topic, n, timeout, key=b"harness-marker")
        if got is None:
            raise HarnessError(f"could not read {topic} to its end in {timeout:g}s")
        return got

    def snapshot_topics(self) -> None:
        """Read back input, output and DLQ of the current broker incarnation (before it goes)."""
        inc = len(self.incarnations)
        self.incarnations.append(self.read_input())
        self.outputs += [(inc, m) for m in self.read_to_end(self.settings.output_topic)]
        self.dlq += [(inc, m) for m in self.read_to_end(self.settings.dlq_topic)]
        self.produced = 0

"""Helpers for the integration tests of the worker: a worker subprocess against the session's
Tansu and redis-server, producing with known offsets, reading topics, reading Redis state, and
the offline fold through the pure scoring core that gives the expected results.

Every wait polls a condition against a deadline; a failed wait shows the worker's log tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from scoring import (
    Change,
    CustomerState,
    InvalidEvent,
    Model,
    advance,
    apply,
    decode_state,
    load_model,
    parse_event,
    values_at,
)
from scoring.model import default_model_path
from stream_app.devkit.stack import LocalService
from stream_app.kafka.topics import prepare
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.records import CustomerRecord, decode_record

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "docs" / "schemas"
DAY_MS = 86_400_000
REL_TOL = 1e-9
#: 2000-01-01T00:00:00Z: older than any replayed history (see :meth:`Worker.wait_ready`).
OLD_MS = 946_684_800_000
MARKER = b'{"test_marker": true}'


def unique(prefix: str) -> str:
    """A name no other call gets, valid as a topic, consumer group or Redis key prefix."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def event(
    event_id: str, customer_id: str, type_: str, ts_ms: int, **properties: Any
) -> dict[str, Any]:
    """One interaction event as a dict (``properties`` only when given)."""
    doc: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": customer_id,
        "type": type_,
        "timestamp": ts_ms,
    }
    if properties:
        doc["properties"] = properties
    return doc


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


def capless_model_file(directory: Path, name: str = "nocaps") -> Path:
    """The default model without any ``max_per_day`` (so arrival order cannot change what
    counts), renamed to ``name``; returns the file written in ``directory``."""
    text = default_model_path().read_text("utf-8")
    text, renamed = re.subn(r'(?m)^name = "default"', f'name = "{name}"', text)
    text, removed = re.subn(r"(?m)^max_per_day = \d+[^\n]*\n", "", text)
    assert renamed == 1 and removed >= 5, "the default model's layout changed; update the helper"
    path = directory / f"{name}.toml"
    path.write_text(text, "utf-8")
    model = load_model(path)
    assert all(et.max_per_day is None for et in model.event_types.values())
    return path


def clean_env() -> dict[str, str]:
    """This process's environment without any ``ENGAGEMENT_*`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}


def worker_env(
    tansu: LocalService,
    redis_server: LocalService,
    workdir: Path,
    *,
    name: str,
    model_file: Path | None = None,
    partitions: int = 4,
    **extra: str,
) -> dict[str, str]:
    """Environment of a worker with its own topics, consumer group and key prefix."""
    env = clean_env()
    env.update(
        {
            "ENGAGEMENT_KAFKA_BROKERS": tansu.url,
            "ENGAGEMENT_REDIS_URL": redis_server.url,
            "ENGAGEMENT_INPUT_TOPIC": unique(f"{name}-in"),
            "ENGAGEMENT_OUTPUT_TOPIC": unique(f"{name}-out"),
            "ENGAGEMENT_DLQ_TOPIC": unique(f"{name}-dlq"),
            "ENGAGEMENT_APP_ID": unique(f"{name}-app"),
            "ENGAGEMENT_KEY_PREFIX": unique(f"{name}-k"),
            "ENGAGEMENT_WEB_ENABLED": "false",
            "ENGAGEMENT_DATA_DIR": str(workdir / "faust"),
            "ENGAGEMENT_PARTITIONS": str(partitions),
            "ENGAGEMENT_LOG_LEVEL": "info",
            # replays reach years back (probes at 2000-01-01: see Worker.wait_ready)
            "ENGAGEMENT_MAX_EVENT_AGE_DAYS": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if model_file is not None:
        env["ENGAGEMENT_MODEL_FILE"] = str(model_file)
    env.update(extra)
    return env


@dataclass(frozen=True, slots=True)
class Sent:
    """Where a produced message landed."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Message:
    """One message read back from a topic."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = ()

    def json(self) -> Any:
        return orjson.loads(self.value)


@dataclass
class Worker:
    """A ``engagement-scorer worker`` subprocess and what the tests need to talk to it."""

    name: str
    env: dict[str, str]
    settings: Settings
    model: Model
    log_path: Path
    process: subprocess.Popen[bytes]
    redis: redis.Redis
    keys: Keys = field(init=False)
    _probe: int = 0

    def __post_init__(self) -> None:
        self.keys = Keys(self.settings.key_prefix, self.model.name)

    # ----------------------------------------------------------------- process

    @property
    def brokers(self) -> str:
        return self.settings.kafka_brokers

    def log_tail(self, limit: int = 6000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def fail(self, message: str) -> None:
        pytest.fail(
            f"{message}\n--- worker {self.name} (pid {self.process.pid}, "
            f"exit {self.process.poll()}) log tail, {self.log_path}:\n{self.log_tail()}",
            pytrace=False,
        )

    def wait(self, condition: Callable[[], T], *, timeout: float = 45.0, what: str) -> T:
        """Poll ``condition`` until truthy (returned); fail with the log tail at the deadline
        or as soon as the worker has exited."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                self.fail(f"worker exited while waiting for {what}: last value {value!r}")
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout:g}s waiting for {what}: last {value!r:.2000}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM, SIGKILL after ``timeout``; reap; close the Redis client. True when the
        worker exited by itself, with status 0."""
        terminate(self.process)
        return self.finish(timeout)

    def finish(self, timeout: float = 20.0) -> bool:
        """Like :meth:`stop`, once SIGTERM was sent (a second one would kill it outright)."""
        clean = finish(self.process, timeout)
        self.redis.close()
        return clean and self.process.returncode == 0

    # ----------------------------------------------------------------- Kafka

    def produce(self, messages: Sequence[Out | bytes], topic: str | None = None) -> list[Sent]:
        """Send to the input topic (or ``topic``); where each message landed, in order."""
        outs = [m if isinstance(m, Out) else Out(m) for m in messages]
        return asyncio.run(produce(self.brokers, topic or self.settings.input_topic, outs))

    def produce_events(
        self, events: Iterable[Mapping[str, Any]], *, keyed: bool = True
    ) -> list[Sent]:
        """Send events keyed by customer id (or with no key, round-robin over partitions)."""
        outs = []
        for i, doc in enumerate(events):
            if keyed:
                outs.append(Out(dumps(doc), doc["customer_id"].encode()))
            else:
                outs.append(Out(dumps(doc), None, i % self.settings.partitions))
        return self.produce(outs)

    def read(
        self,
        topic: str,
        until: Callable[[list[Message]], object],
        *,
        timeout: float = 45.0,
        what: str,
    ) -> list[Message]:
        """Read ``topic`` from the beginning until ``until(messages)`` is truthy."""
        found = asyncio.run(read_until(self.brokers, topic, until, timeout))
        if found is None:
            self.fail(f"timed out after {timeout:g}s reading {topic} for {what}")
            raise AssertionError("unreachable")
        return found

    def read_all(self, topic: str, *, timeout: float = 30.0) -> list[Message]:
        """Everything in ``topic`` produced before this call (marker messages excluded).

        Tansu's ListOffsets answers the last batch's base offset + 1, not the end offset, so
        the end is found by writing a marker to every partition and reading up to the markers.
        Only for topics the worker does not consume (markers are not events)."""
        n = self.settings.partitions
        sent = self.produce([Out(MARKER, b"test-marker", p) for p in range(n)], topic)
        ends = {(s.partition, s.offset) for s in sent}

        def done(messages: list[Message]) -> bool:
            return ends <= {(m.partition, m.offset) for m in messages}

        return [
            m for m in self.read(topic, done, timeout=timeout, what="markers") if m.value != MARKER
        ]

    # ----------------------------------------------------------------- Redis

    def record(self, customer_id: str) -> CustomerRecord | None:
        raw = self.redis.get(self.keys.state(customer_id))
        return None if raw is None else decode_record(raw)  # type: ignore[arg-type]

    def state(self, customer_id: str) -> CustomerState | None:
        rec = self.record(customer_id)
        if rec is None or rec.state is None:
            return None
        return decode_state(rec.state, self.model)

    def states(self, customer_ids: Iterable[str]) -> dict[str, CustomerState | None]:
        ids = list(customer_ids)
        raws = self.redis.mget([self.keys.state(c) for c in ids]) if ids else []
        out: dict[str, CustomerState | None] = {}
        for cid, raw in zip(ids, raws, strict=True):  # type: ignore[arg-type]
            rec = None if raw is None else decode_record(raw)
            state = None if rec is None or rec.state is None else rec.state
            out[cid] = None if state is None else decode_state(state, self.model)
        return out

    def wait_processed(self, sent: Mapping[str, Sent], *, timeout: float = 45.0) -> None:
        """Wait until each customer's record marks the input offset ``sent[customer]`` as
        applied (keyed input: every message of that customer up to it was processed)."""

        def missing() -> list[str]:
            ids = list(sent)
            raws = self.redis.mget([self.keys.state(c) for c in ids])
            late = []
            for cid, raw in zip(ids, raws, strict=True):  # type: ignore[arg-type]
                src = f"i{sent[cid].partition}"
                if raw is None or decode_record(raw).marks.get(src, -1) < sent[cid].offset:
                    late.append(cid)
            return late

        self.wait(lambda: not missing(), timeout=timeout, what=f"processed: {missing()[:5]}")

    def wait_ready(self, timeout: float = 60.0, *, at_ms: int | None = None) -> None:
        """Send a probe event and wait until it is scored (the worker joined and consumes).

        With ``at_ms`` the probe is a ``web_visit`` at that time (it fires no crossing).
        Give an old time before replaying history into the worker: the decay sweep fires
        crossings up to a partition's largest event time, so a probe stamped now would let
        it fire crossings of replayed customers ahead of their queued events."""
        self._probe += 1
        cid = f"probe-{self._probe}"
        if at_ms is None:
            doc = event(unique("probe"), cid, "webinar_attended", now_ms() - 1000)
        else:
            doc = event(unique("probe"), cid, "web_visit", at_ms)
        sent = self.produce_events([doc])
        self.wait_processed({cid: sent[0]}, timeout=timeout)


def start_worker(
    tansu: LocalService,
    redis_server: LocalService,
    workdir: Path,
    *,
    name: str,
    model_file: Path | None = None,
    partitions: int = 4,
    **extra: str,
) -> Worker:
    """Create the worker's topics, then launch it (not waiting: see :meth:`Worker.wait_ready`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = worker_env(
        tansu, redis_server, workdir, name=name, model_file=model_file, partitions=partitions,
        **extra,
    )  # fmt: skip
    settings = Settings.from_env(env)
    asyncio.run(prepare(settings, timeout_s=30.0))  # topics exist before anyone produces
    return launch(name, env, settings, workdir / f"worker-{name}.log", redis_server.url)


def launch(
    name: str, env: dict[str, str], settings: Settings, log_path: Path, redis_url: str
) -> Worker:
    """Start a worker process with ``env`` (its topics must exist), logging to ``log_path``;
    the tests read its Redis through a plain client of ``redis_url`` (a node's URL even when
    the worker itself talks to a Redis Cluster)."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "worker"],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(
        name=name,
        env=env,
        settings=settings,
        model=load_model(settings.model_path),
        log_path=log_path,
        process=process,
        redis=redis.Redis.from_url(redis_url),
    )


def relaunch(w: Worker, name: str) -> Worker:
    """Another process of ``w``'s deployment: same topics, consumer group and key prefix."""
    kwargs = w.redis.connection_pool.connection_kwargs
    host, port, db = kwargs["host"], kwargs["port"], kwargs.get("db", 0)
    url = f"redis://{host}:{port}/{db}"
    return launch(name, w.env, w.settings, w.log_path.with_name(f"worker-{name}.log"), url)


def terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)


def finish(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for ``process`` (already signalled) to exit; SIGKILL it after ``timeout``.
    True when it exited by itself."""
    try:
        process.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return False


def stop_all(workers: Sequence[Worker], timeout: float = 20.0) -> list[str]:
    """Stop several workers at once (SIGTERM to all first, so they shut down in parallel).
    Returns what went wrong: each worker that did not exit by itself with status 0, with
    its log tail (empty when all stopped cleanly)."""
    for w in workers:
        terminate(w.process)
    unclean = []
    for w in workers:
        if not w.finish(timeout):
            unclean.append(
                f"worker {w.name} did not stop cleanly on SIGTERM within {timeout:g}s "
                f"(exit {w.process.returncode}); log tail:\n{w.log_tail(3000)}"
            )
    return unclean


# --------------------------------------------------------------------------- Kafka clients


@dataclass(frozen=True, slots=True)
class Out:
    """A message to produce: value, key, and an explicit partition (None: the partitioner's)."""

    value: bytes
    key: bytes | None = None
    partition: int | None = None


async def produce(brokers: str, topic: str, messages: Sequence[Out]) -> list[Sent]:
    """Produce in order with acks=all; returns each message's partition and offset."""
    producer = AIOKafkaProducer(
        bootstrap_servers=brokers, acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, m.value, key=m.key, partition=m.partition) for m in messages
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [Sent(md.partition, md.offset) for md in metas]


async def list_topics(brokers: str) -> set[str]:
    """Topic names, by listing (a Metadata request naming a topic would create it on Tansu)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _consumer(brokers: str, topic: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    if topic not in await list_topics(brokers):
        raise AssertionError(f"topic {topic!r} does not exist")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=brokers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer.stop()
        raise AssertionError(f"no partitions for {topic!r}")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, tps


async def read_until(
    brokers: str, topic: str, until: Callable[[list[Message]], object], timeout: float
) -> list[Message] | None:
    """All messages of ``topic`` from the start, once ``until`` holds (None at the deadline)."""
    deadline = time.monotonic() + timeout
    consumer, _ = await _consumer(brokers, topic)
    seen: list[Message] = []
    try:
        while True:
            if until(seen):
                return seen
            if time.monotonic() > deadline:
                return None
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, msgs in batch.items():
                seen.extend(
                    Message(m.key, m.value, tp.partition, m.offset, tuple(m.headers)) for m in msgs
                )
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- offline fold


@dataclass
class Folded:
    """One customer's expected outcome: state, changes published, NPS responses counted."""

    state: CustomerState | None = None
    changes: list[Change] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    nps: list[tuple[str, str, str]] = field(default_factory=list)  # (day, tier, category)


def fold(
    raws: Iterable[bytes], model: Model, *, at_ms: int | None = None, dedup_memory: int = 16
) -> dict[str, Folded]:
    """Apply raw messages in the given order per customer, as one clean pass of the worker
    would (invalid ones skipped, as the worker dead-letters them)."""
    clock = now_ms() if at_ms is None else at_ms
    out: dict[str, Folded] = defaultdict(Folded)
    for raw in raws:
        try:
            ev = parse_event(raw, model, now_ms=clock)
        except InvalidEvent:
            continue
        f = out[ev.customer_id]
        result = apply(f.state, ev, model, dedup_memory=dedup_memory)
        f.state = result.state
        f.changes.extend(result.changes)
        f.statuses.append(result.status)
        if result.nps is not None:
            f.nps.append((result.nps.day, result.nps.tier, result.nps.category))
    return dict(out)


def in_offset_order(docs: Sequence[Mapping[str, Any]], sent: Sequence[Sent]) -> list[bytes]:
    """The raw messages ordered as a worker meets them: by (partition, offset)."""
    pairs = sorted(zip(sent, docs, strict=True), key=lambda p: (p[0].partition, p[0].offset))
    return [dumps(doc) for _, doc in pairs]


def catch_up(
    expected: CustomerState, actual: CustomerState, customer_id: str, model: Model
) -> CustomerState:
    """``expected`` advanced through decay crossings to ``actual``'s clock, when the worker's
    decay sweep has moved the stored clock past the last event (a no-op otherwise)."""
    if actual.clock_ms > expected.clock_ms:
        expected, _ = advance(expected, customer_id, actual.clock_ms, model)
    return expected


def settle(
    state: CustomerState, customer_id: str, model: Model, horizon_ms: float
) -> CustomerState:
    """``state`` with every decay crossing up to ``horizon_ms`` applied (pure).

    The worker's decay sweep fires crossings on its own schedule; settling both the stored
    state and the offline fold to one horizon makes them comparable whenever the sweep ran.
    ``settle(settle(s, t1), t2) == settle(s, t2)``, so a state the sweep already advanced
    part of the way settles to exactly the same result."""
    settled, _ = advance(state, customer_id, horizon_ms, model)
    return settled


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=REL_TOL)


def state_differences(
    actual: CustomerState, expected: CustomerState, model: Model, *, at_ms: float
) -> list[str]:
    """What differs between two states of one event history, settled to the horizon
    ``at_ms``: dimension values and score at ``at_ms`` (relative tolerance), segments, events
    applied, NPS answer, last event time, and the tier unless the score lies in a hysteresis
    band. Empty when they agree.

    Not compared: the clock and, inside a band, the tier. Both depend on the path the score
    took, which depends on the order the worker met events and crossings in: across source
    partitions that order is not defined, and the decay sweep fires crossings at a partition's
    event-time progress, so an older event queued behind newer ones (a replayed history, a
    re-keyed message) arrives as a late event after a crossing the offline fold fires later.
    Values, segments and counts do not depend on that order."""
    diffs = []
    va = values_at(actual, model, at_ms)
    ve = values_at(expected, model, at_ms)
    if not close(va.score, ve.score):
        diffs.append(f"score {va.score!r} != {ve.score!r}")
    for dim in model.dimensions:
        if not close(va.dimensions[dim], ve.dimensions[dim]):
            diffs.append(f"{dim} {va.dimensions[dim]!r} != {ve.dimensions[dim]!r}")
    if actual.tier != expected.tier and not in_hysteresis_band(expected, model, at_ms):
        diffs.append(f"tier {actual.tier_name(model)} != {expected.tier_name(model)}")
    if actual.segments != expected.segments:
        diffs.append(f"segments {actual.segment_names(model)} != {expected.segment_names(model)}")
    if actual.events_applied != expected.events_applied:
        diffs.append(f"events_applied {actual.events_applied} != {expected.events_applied}")
    if (actual.nps_score, actual.nps_at_ms) != (expected.nps_score, expected.nps_at_ms):
        diffs.append(f"nps {actual.nps_score} != {expected.nps_score}")
    if actual.last_event_ms != expected.last_event_ms:
        diffs.append(f"last_event_ms {actual.last_event_ms} != {expected.last_event_ms}")
    return diffs


def in_hysteresis_band(state: CustomerState, model: Model, at_ms: float) -> bool:
    """True when the score at ``at_ms`` lies where the tier depends on the path the score
    took (at or above a tier's down bound, below its threshold)."""
    score = values_at(state, model, at_ms).score
    return any(t.threshold * (1 - model.hysteresis) <= score < t.threshold for t in model.tiers[1:])

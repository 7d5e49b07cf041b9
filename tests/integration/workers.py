"""Helpers for the integration tests of the worker: a worker subprocess against the session's
Tansu and redis-server, producing to it, reading its topics and its Redis state.

The Kafka clients and the offline fold that gives the expected results are in
:mod:`tests.support`. Every wait polls a condition against a deadline; a failed wait shows the
worker's log tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import redis

from scoring import CustomerState, Model, decode_state, load_model
from scoring.model import default_model_path
from stream_app.devkit.stack import LocalService
from stream_app.kafka.topics import prepare
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.records import CustomerRecord, decode_record
from tests.support.kafka import Message, Out, Sent, produce, read_to_end, read_until

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "docs" / "schemas"
DAY_MS = 86_400_000
#: 2000-01-01T00:00:00Z: older than any replayed history (see :meth:`Worker.wait_ready`).
OLD_MS = 946_684_800_000


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
        """Everything in ``topic`` produced before this call (``support.kafka.read_to_end``:
        only for topics the worker does not consume, markers are not events)."""
        found = read_to_end(self.brokers, topic, self.settings.partitions, timeout)
        if found is None:
            self.fail(f"timed out after {timeout:g}s reading {topic} for markers")
            raise AssertionError("unreachable")
        return found

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


def assigned(worker: Worker) -> set[int] | None:
    """The input partitions of the worker's latest assignment, from faust's log table
    (None before the first one)."""
    blocks = worker.log_tail(2_000_000).split("Setting newly assigned partitions")
    if len(blocks) < 2:
        return None
    topic = re.escape(worker.settings.input_topic)
    found = re.search(rf"\|\s*{topic}\s*\|\s*\{{([^}}]*)\}}", blocks[-1])
    parts: set[int] = set()
    for item in found.group(1).split(",") if found else ():
        lo, _, hi = item.strip().partition("-")
        parts.update(range(int(lo), int(hi or lo) + 1))
    return parts


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
    name: str,
    env: dict[str, str],
    settings: Settings,
    log_path: Path,
    redis_url: str,
    *,
    module: str = "stream_app.cli",
) -> Worker:
    """Start a worker process with ``env`` (its topics must exist), logging to ``log_path``;
    the tests read its Redis through a plain client of ``redis_url`` (a node's URL even when
    the worker itself talks to a Redis Cluster). ``module`` is run with ``worker``."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "worker"],
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

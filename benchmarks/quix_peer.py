"""The benchmark's Quix Streams peer: the worker's job done the way a Quix user would do it.

The alternative a Python user would pick for this job is a Quix Streams application, so
the benchmark runs one on the same input topic and compares events/s. It does what the
worker does per message, with the project's own scoring core:

* parse the message (``scoring.parse_event``); what cannot be scored goes to a
  dead-letter topic (``stream_app.contracts.dead_letter``);
* read the customer's record from Quix's per-key state (RocksDB, via rocksdict), apply
  the event (``scoring.apply``), add it to the explanation (``scoring.explain_add``, the
  worker's default of 10 events) and write the record back (``encode_state`` and
  ``encode_explanation``, raw bytes: no JSON round trip in the state store);
* produce every tier or segment change as its CloudEvent (``stream_app.contracts``) to
  an output topic, keyed by customer, with the worker's ``content-type`` header.

Quix Streams' defaults otherwise: at-least-once, a checkpoint every 5 s, a changelog
topic backing the state. The group-join settings are the worker's (:data:`JOIN`).

What it does not do, because Quix Streams has no per-key timers: the worker's due index
and decay sweep (crossings due before an event are still applied by ``scoring.apply``,
as in the worker). So the peer does a little less work per event than the worker. Quix
keeps state per message key, so the input must be keyed by customer (the benchmark's
workload is); a message keyed otherwise is dead-lettered (``bad_field``), where the
worker would forward it to its by-customer topic.

As a process (started by :func:`measure`; not meant to be run by hand)::

    python benchmarks/quix_peer.py --bootstrap 127.0.0.1:9092 --topic in --output out \\
        --dlq dlq --group g --state-dir /tmp/s --expect 200000 --result /tmp/r.json

it counts input messages until ``--expect`` were processed, writes ``--result`` (the
window from the first to the last message, the process's CPU seconds over it, what it
produced), then stops (final checkpoint) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: The worker's group-join settings (``stream_app.faustx.tuning.fast_join_settings``): Tansu
#: answers a group's first JoinGroup after about half the session timeout, which is
#: librdkafka's 45 s by default.
JOIN = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
CLOUDEVENT_HEADERS = {"content-type": b"application/cloudevents+json; charset=UTF-8"}
_LEN = struct.Struct("<I")

Spawn = Callable[[list[str], dict[str, str], Path], "subprocess.Popen[bytes]"]
Stop = Callable[["subprocess.Popen[bytes]"], None]


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def pack(state: bytes, explanation: bytes | None) -> bytes:
    """One customer's record in the state store: the state, then the explanation."""
    return _LEN.pack(len(state)) + state + (explanation or b"")


def unpack(record: bytes) -> tuple[bytes, bytes | None]:
    """:func:`pack` undone.

    >>> unpack(pack(b"state", b"why")), unpack(pack(b"state", None))
    ((b'state', b'why'), (b'state', None))
    """
    (n,) = _LEN.unpack_from(record)
    return record[4 : 4 + n], record[4 + n :] or None


class Counter:
    """Counts processed messages; once ``expect`` were seen, writes the result and stops."""

    def __init__(self, expect: int, result: Path, stop: Callable[[], None]) -> None:
        self.expect, self.result, self.stop = expect, result, stop
        self.count = self.changes = self.dead = 0
        self.first: tuple[float, float] | None = None  # wall time, CPU at the first message

    def add(self) -> None:
        self.count += 1
        if self.first is None:
            self.first = (time.time(), _cpu_s())
        if self.count == self.expect:
            first_t, first_cpu = self.first
            doc = {
                "first_t": first_t,
                "first_n": 1,
                "last_t": time.time(),
                "count": self.count,
                "cpu_s": _cpu_s() - first_cpu,  # this process, all its threads
                "changes": self.changes,
                "dead": self.dead,
                "pid": os.getpid(),
            }
            tmp = self.result.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(self.result)
            self.stop()


def processor(
    counter: Counter, explain_events: int = 10, dedup_memory: int = 16
) -> Callable[..., list[tuple[bool, bytes]]]:
    """The stateful function (value, key, timestamp, headers, state): one message in,
    ``(dead?, bytes)`` messages out."""
    from quixstreams import message_context

    import scoring
    from stream_app import jsonutil
    from stream_app.contracts import cloudevent, dead_letter

    model = scoring.load_default_model()
    points = {name: t.points for name, t in model.event_types.items()}

    def dead(raw: bytes, reason: str, detail: str) -> list[tuple[bool, bytes]]:
        ctx = message_context()
        counter.dead += 1
        body = dead_letter(
            reason=reason, detail=detail, topic=ctx.topic, partition=ctx.partition,
            offset=ctx.offset, payload=raw, received_ms=time.time() * 1000,
        )  # fmt: skip
        return [(True, jsonutil.dumps(body))]

    def process(
        raw: bytes, key: Any, ts: int, headers: Any, store: Any
    ) -> list[tuple[bool, bytes]]:
        counter.add()
        try:
            event = scoring.parse_event(raw, model, now_ms=int(time.time() * 1000))
        except scoring.InvalidEvent as exc:
            return dead(raw, exc.reason, exc.detail)
        if key != event.customer_id.encode():
            return dead(raw, "bad_field", "the message key is not the customer id")
        record = store.get("r")
        state, expl = (None, None)
        if record is not None:
            blob, xblob = unpack(record)
            state = scoring.decode_state(blob, model)
            expl = scoring.decode_explanation(xblob, model) if xblob is not None else None
        result = scoring.apply(state, event, model, dedup_memory=dedup_memory)
        if result.status != "duplicate":
            if explain_events:
                got = points[event.type] if result.status == "applied" else 0.0
                expl = scoring.explain_add(expl, event, got, model, keep=explain_events)
            encoded = None if expl is None else scoring.encode_explanation(expl, model)
            store.set("r", pack(scoring.encode_state(result.state), encoded))
        counter.changes += len(result.changes)
        return [(False, jsonutil.dumps(cloudevent(c))) for c in result.changes]

    return process


def run_peer(args: argparse.Namespace) -> int:
    """The peer process: a Quix Streams application until ``--expect`` messages were seen."""
    from quixstreams import Application
    from quixstreams.models.serializers import Serializer
    from quixstreams.models.topics import TopicConfig
    from quixstreams.state.rocksdb import RocksDBOptions

    class Payload(Serializer):
        """Writes a ``(dead?, bytes)`` row's bytes, with fixed headers."""

        def __init__(self, headers: dict[str, bytes] | None = None) -> None:
            self._headers = headers or {}

        @property
        def extra_headers(self) -> dict[str, bytes]:  # type: ignore[override]
            return self._headers

        def __call__(self, row: tuple[bool, bytes], ctx: Any = None) -> bytes:
            return row[1]

    import orjson

    def dumps(value: Any) -> bytes:  # our records are bytes already; keys are not
        return value if type(value) is bytes else orjson.dumps(value)

    def loads(value: bytes) -> bytes:
        return value

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(args.state_dir),
        rocksdb_options=RocksDBOptions(dumps=dumps, loads=loads),
        use_changelog_topics=not args.no_changelog,
        loglevel=args.log_level,
        consumer_extra_config=JOIN | json.loads(args.consumer_config),
    )
    config = TopicConfig(num_partitions=args.partitions, replication_factor=1)
    source = app.topic(
        args.topic, key_deserializer="bytes", value_deserializer="bytes", config=config
    )
    output = app.topic(
        args.output, key_serializer="bytes", value_serializer=Payload(CLOUDEVENT_HEADERS),
        config=config,
    )  # fmt: skip
    dlq = app.topic(args.dlq, key_serializer="bytes", value_serializer=Payload(), config=config)
    counter = Counter(args.expect, args.result, app.stop)
    sdf = app.dataframe(source)
    rows = sdf.apply(processor(counter), stateful=True, expand=True, metadata=True)
    rows.to_topic(lambda row, key, ts, headers: dlq if row[0] else output)
    app.run()
    return 0


# --------------------------------------------------------------------------- orchestration


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fp:
        return subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=fp, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=REPO,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def measure(
    bootstrap: str,
    topic: str,
    expect: int,
    *,
    workdir: Path,
    partitions: int,
    timeout: float = 600.0,
    spawn: Spawn = _spawn,
    stop: Stop = _stop,
    changelog: bool = True,
) -> dict[str, Any]:
    """Run the peer over ``topic`` (from the beginning) until ``expect`` messages are done.

    Returns ``events_per_s`` (from the first message to the last, the first not counted),
    ``cpu_us_per_event`` and ``cpu_cores`` (the peer process, all its threads, over the
    same window), ``window`` (its wall-clock ends) and ``window_s``, ``startup_s`` (launch
    to first message), ``changes``, ``dead``, and the topics it wrote. ``spawn``/``stop``
    start and stop the process (by pid); the orchestrator passes its own to keep track of
    it.
    """
    if version() is None:
        raise RuntimeError("quixstreams is not installed: pip install -e '.[bench]'")
    run = uuid.uuid4().hex[:6]
    names = {"output": f"quix-{run}-out", "dlq": f"quix-{run}-dlq", "group": f"quix-{run}"}
    result = workdir / f"quix-{run}.json"
    log = workdir / f"quix-{run}.log"
    argv = [
        sys.executable, str(Path(__file__).resolve()), "--bootstrap", bootstrap,
        "--topic", topic, "--output", names["output"], "--dlq", names["dlq"],
        "--group", names["group"], "--state-dir", str(workdir / f"quix-{run}-state"),
        "--partitions", str(partitions), "--expect", str(expect), "--result", str(result),
    ]  # fmt: skip
    if not changelog:
        argv.append("--no-changelog")
    from stream_app.kafka.topics import TopicSpec, ensure_topics

    # (Tansu reports only the configs given at creation: create them as the worker's are)
    await ensure_topics(bootstrap, [TopicSpec(names[k], partitions) for k in ("output", "dlq")])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGAGEMENT_", "Quix__"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    launched = time.time()
    proc = spawn(argv, env, log)
    try:
        deadline = time.monotonic() + timeout
        while not result.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"quix peer exited ({proc.returncode}):\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"quix peer: no result in {timeout:.0f} s:\n{_tail(log)}")
            await asyncio.sleep(0.1)
        doc = json.loads(result.read_text())
    finally:
        stop(proc)
    return figures(doc, launched) | {"topics": names, "pid": proc.pid, "log": str(log)}


def figures(doc: dict[str, Any], launched: float) -> dict[str, Any]:
    """The figures of one result document (see :class:`Counter`).

    >>> f = figures({"first_t": 10.0, "first_n": 1, "last_t": 12.0, "count": 2001,
    ...              "cpu_s": 1.8, "changes": 5, "dead": 0}, launched=9.0)
    >>> f["events_per_s"], round(f["cpu_us_per_event"], 1), f["startup_s"]
    (1000.0, 900.0, [1.0])
    """
    t0, t1 = doc["first_t"], doc["last_t"]
    counted = doc["count"] - doc["first_n"]
    rate = counted / (t1 - t0) if t1 > t0 else float("nan")
    out = {
        "events": doc["count"],
        "events_per_s": rate,
        "window_s": t1 - t0,
        "cpu_cores": doc["cpu_s"] / (t1 - t0) if t1 > t0 else float("nan"),
        "startup_s": [t0 - launched],  # (a list, as for the worker phases)
        "window": [t0, t1],
        "changes": doc["changes"],
        "dead": doc["dead"],
    }
    if counted > 0:
        out["cpu_us_per_event"] = doc["cpu_s"] / counted * 1e6
    return out


def version() -> str | None:
    """The installed quixstreams version (None: not installed; ``pip install -e '.[bench]'``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("quixstreams")
    except PackageNotFoundError:
        return None


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_bytes()[-limit:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for name in ("--bootstrap", "--topic", "--output", "--dlq", "--group"):
        p.add_argument(name, required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--result", type=Path, required=True)
    p.add_argument("--no-changelog", action="store_true", help="no changelog topic")
    p.add_argument("--log-level", default="WARNING", help="the quixstreams logger's level")
    p.add_argument("--consumer-config", default="{}", help="librdkafka consumer settings (JSON)")
    return run_peer(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

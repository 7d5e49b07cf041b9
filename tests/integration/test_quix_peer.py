"""The benchmark's Quix Streams peer does the worker's job: on a real Tansu broker it
produces exactly the changes one offline pass of the scoring core gives, per customer in
order, as the worker's CloudEvents."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

if importlib.util.find_spec("quixstreams") is None:  # (not imported here: it warns)
    pytest.skip("needs the `bench` extra (make setup installs it)", allow_module_level=True)

import scoring
from stream_app import jsonutil
from stream_app.contracts import cloudevent
from stream_app.devkit.stack import LocalService
from stream_app.kafka.topics import TopicSpec, ensure_topics

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import quix_peer  # noqa: E402
from e2e.config import Config  # noqa: E402
from e2e.workload import produce, throughput_workload  # noqa: E402

EVENTS, CUSTOMERS, PARTITIONS = 1500, 120, 4


def offline(messages: list[tuple[bytes, bytes]], now_ms: int) -> dict[bytes, list[bytes]]:
    """Every change one in-order pass gives, as CloudEvent bytes, per customer key."""
    model = scoring.load_default_model()
    states: dict[str, scoring.CustomerState] = {}
    out: dict[bytes, list[bytes]] = defaultdict(list)
    for key, raw in messages:
        try:
            event = scoring.parse_event(raw, model, now_ms=now_ms)
        except scoring.InvalidEvent:
            continue
        if key != event.customer_id.encode():
            continue
        result = scoring.apply(states.get(event.customer_id), event, model)
        states[event.customer_id] = result.state
        out[key].extend(jsonutil.dumps(cloudevent(c)) for c in result.changes)
    return out


def read_topic(
    bootstrap: str, topic: str, count: int, timeout: float
) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """``count`` messages of every partition of ``topic`` from the start, then one more
    short poll to see that nothing follows them."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "x", "enable.auto.commit": False}
    )
    got: list[tuple[bytes, bytes, dict[str, bytes]]] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=0.5):
                assert m.error() is None, m.error()
                got.append((m.key(), m.value(), dict(m.headers() or [])))
        got.extend((m.key(), m.value(), {}) for m in consumer.consume(500, timeout=1.0))
    finally:
        consumer.close()
    return got


def test_the_quix_peer_gives_the_offline_changes(
    tansu: LocalService, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    topic = unique_name("quix-in")
    now_ms = int(time.time() * 1000)
    cfg = Config(
        EVENTS, CUSTOMERS, PARTITIONS, 0.8, 3, 2000.0, 10.0, 100, 0.25, False,
        tmp_path / "x.json", frozenset(),
    )  # fmt: skip
    messages = throughput_workload(cfg, now_ms).messages
    good = messages[0][1]
    bad = [(b"cust-000001", b"{not json"), (b"cust-000002", good)]  # bad JSON, wrong key
    messages[700:700] = bad
    want = offline(messages, now_ms)
    assert sum(map(len, want.values())) > 20  # the stream does change tiers and segments

    async def produce_and_measure() -> dict[str, object]:
        await ensure_topics(tansu.url, [TopicSpec(topic, PARTITIONS)])
        await produce(tansu.url, topic, messages)
        return await quix_peer.measure(
            tansu.url, topic, len(messages), workdir=tmp_path, partitions=PARTITIONS, timeout=120
        )

    figures = asyncio.run(produce_and_measure())
    assert figures["events"] == EVENTS + 2 and figures["dead"] == 2
    assert isinstance(figures["events_per_s"], float) and figures["events_per_s"] > 0
    assert isinstance(figures["cpu_us_per_event"], float) and figures["cpu_us_per_event"] > 0
    assert figures["changes"] == sum(map(len, want.values()))

    output = figures["topics"]["output"]  # type: ignore[index]
    got = read_topic(tansu.url, output, figures["changes"], timeout=60)  # type: ignore[arg-type]
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value, headers in got:
        by_key[key].append(value)
        assert headers.get("content-type") == quix_peer.CLOUDEVENT_HEADERS["content-type"]
    assert dict(by_key) == {k: v for k, v in want.items() if v}
    dead = read_topic(tansu.url, figures["topics"]["dlq"], 2, timeout=30)  # type: ignore[index]
    reasons = sorted(jsonutil.loads(value)["reason"] for _, value, _ in dead)
    assert reasons == ["bad_field", "not_json"]

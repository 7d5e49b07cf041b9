"""One generated stream, produced the ways users produce, and its offline reference.

- :func:`generated_stream`: simulated customers over some days, in time order, with
  redeliveries (the same event re-sent a few messages later), swaps of a customer's two
  neighbouring events, and hostile messages (dead letters).
- :func:`produce_ck`: produced with confluent-kafka (librdkafka), the client most
  non-JVM producers run: keyed with Java's murmur2 (``partitioner=murmur2_random``),
  keyed with its default partitioner (``consistent_random``, CRC32), or unkeyed.
- :func:`fold_in_order`: one offline pass (the shared offline fold) over each customer's
  events in the order the scorer meets them (:func:`scorer_order`): its direct messages in
  input offset order, or its forwarded ones in by-customer offset order (read back from
  that topic, control records left out), then every decay crossing up to a horizon.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from scoring import Change, CustomerState, Event, Model
from stream_app import jsonutil
from stream_app.contracts import cloudevent
from stream_app.messages import expected_partition
from stream_app.worker.watermarks import decode_watermark, forwarded_from, is_control
from tests.support.fold import OfflineFold, canonical
from tests.support.kafka import Message as Read
from tests.support.kafka import read_until

DAY_MS = 86_400_000
HOSTILE: tuple[bytes, ...] = (
    b"not json at all",
    b'{"event_id": 7, "customer_id": "x", "type": "web_visit", "timestamp": 1}',
    b'{"customer_id": "x"}',
    b"[1, 2, 3]",
)
KINDS = ("murmur2", "default", "unkeyed")


@dataclass(frozen=True, slots=True)
class Produced:
    """One message as produced and where it landed."""

    value: bytes
    key: bytes | None
    partition: int
    offset: int


def generated_stream(
    prefix: str, *, start_ms: int, days: int = 30, customers: int = 40, seed: int = 7
) -> list[bytes]:
    """The stream's messages in production order (valid events and hostile ones)."""
    from stream_app.devkit.simulator import SimConfig, history

    config = SimConfig(
        customers=customers, seed=seed, start_ms=start_ms, end_ms=start_ms + days * DAY_MS
    )
    docs = [
        {**e, "customer_id": prefix + e["customer_id"], "event_id": prefix + e["event_id"]}
        for e in history(config)
    ]
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for doc in docs:
        out.append(doc)
        if len(out) > 1 and out[-2]["customer_id"] == doc["customer_id"] and rng.random() < 0.3:
            out[-2], out[-1] = out[-1], out[-2]  # a customer's two events, swapped
    for i in range(len(out) - 1, 0, -1):
        if rng.random() < 0.03:  # redelivered a few messages later
            out.insert(min(len(out), i + rng.randint(1, 4)), out[i])
    raws = [orjson.dumps(d) for d in out]
    for _ in range(max(1, len(raws) // 50)):  # 2 % hostile
        raws.insert(rng.randrange(len(raws)), rng.choice(HOSTILE))
    return raws


def producer_config(brokers: str, kind: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": brokers,
        "acks": "all",
        "linger.ms": 5,
        "max.in.flight.requests.per.connection": 1,  # no reordering on a retry
    }
    if kind == "murmur2":
        conf["partitioner"] = "murmur2_random"
    elif kind == "unkeyed":
        conf["sticky.partitioning.linger.ms"] = 0  # each message to a random partition
    return conf


def customer_of(raw: bytes) -> str | None:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    cid = doc.get("customer_id") if isinstance(doc, dict) else None
    return cid if isinstance(cid, str) else None


def produce_ck(brokers: str, topic: str, raws: Sequence[bytes], kind: str) -> list[Produced]:
    """Produce in order with confluent-kafka; where each message landed."""
    producer = Producer(producer_config(brokers, kind))
    landed: dict[int, Produced] = {}
    errors: list[str] = []

    def report(
        i: int, raw: bytes, key: bytes | None
    ) -> Callable[[KafkaError | None, Message], None]:
        def done(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                landed[i] = Produced(raw, key, msg.partition(), msg.offset())

        return done

    for i, raw in enumerate(raws):
        cid = customer_of(raw)
        key = None if kind == "unkeyed" or cid is None else cid.encode()
        producer.produce(topic, value=raw, key=key, on_delivery=report(i, raw, key))
        producer.poll(0)
    if producer.flush(30) or errors or len(landed) != len(raws):
        raise AssertionError(f"confluent-kafka produce failed: {errors[:3]}")
    return [landed[i] for i in range(len(raws))]


def forwarded(p: Produced, customer_id: str, partitions: int) -> bool:
    """The scorer's forwarding rule (``BatchProcessor.forwards``)."""
    if partitions == 1:
        return False
    if p.key is None or p.partition != expected_partition(customer_id, partitions):
        return True
    return p.key != customer_id.encode()


async def read_by_customer(
    brokers: str, topic: str, partitions: int, after_ms: float, timeout: float
) -> list[Read]:
    """The by-customer topic up to, in every partition, a watermark of every input partition
    at or after ``after_ms``: everything forwarded before then lies before those."""

    def done(messages: list[Read]) -> bool:
        seen: set[tuple[int, int]] = set()
        for m in messages:
            if is_control(m.headers) and decode_watermark(m.value).progress_ms >= after_ms:
                seen.add((m.partition, decode_watermark(m.value).source))
        return len(seen) == partitions * partitions

    found = await read_until(brokers, topic, done, timeout)
    if found is None:
        raise AssertionError(f"no watermark at or after {after_ms} in every partition of {topic}")
    return found


@dataclass
class Reference:
    """The offline pass: per customer, its final state (advanced to the horizon), its
    changes, and the order its event ids were applied in (duplicates left out)."""

    states: dict[str, CustomerState] = field(default_factory=dict)
    changes: dict[str, list[Change]] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)

    def docs(self, customers: Iterable[str] | None = None) -> set[bytes]:
        wanted = self.changes if customers is None else customers
        return {change_doc(c) for cid in wanted for c in self.changes.get(cid, [])}


def fold_in_order(
    per_customer: Mapping[str, Sequence[bytes]], model: Model, horizon_ms: float
) -> Reference:
    """Each customer's messages folded in the given order (validated at ``horizon_ms``,
    invalid ones skipped), then every decay crossing up to ``horizon_ms``."""
    offline = OfflineFold(model, at_ms=int(horizon_ms))
    order: dict[str, list[str]] = defaultdict(list)
    for raws in per_customer.values():
        for raw in raws:
            event = offline.add(raw)
            if not isinstance(event, Event):
                continue  # dead-lettered by the worker
            if offline.customers[event.customer_id].statuses[-1] != "duplicate":
                order[event.customer_id].append(event.event_id)
    offline.advance(horizon_ms)
    ref = Reference()
    for cid, folded in offline.customers.items():
        assert folded.state is not None
        ref.states[cid], ref.changes[cid], ref.order[cid] = folded.state, folded.changes, order[cid]
        ref.applied[cid] = folded.state.events_applied
    return ref


def stream_order(raws: Iterable[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for raw in raws:
        if (cid := customer_of(raw)) is not None:
            out[cid].append(raw)
    return out


def scorer_order(
    produced: Sequence[Produced], by_customer: Sequence[Read], partitions: int
) -> dict[str, list[bytes]]:
    """Each customer's messages as the scorer meets them: direct ones by input offset,
    forwarded ones by by-customer offset (one path per customer, checked), without the
    copies a crash made the forwarder send again (the customer's source marks)."""
    direct: dict[str, list[Produced]] = defaultdict(list)
    via: set[str] = set()
    for p in produced:
        if (cid := customer_of(p.value)) is not None:
            if forwarded(p, cid, partitions):
                via.add(cid)
            else:
                direct[cid].append(p)
    both = via & set(direct)
    assert not both, f"customers on both paths (order undefined): {sorted(both)[:5]}"
    out = {cid: [p.value for p in sorted(ps, key=lambda p: p.offset)] for cid, ps in direct.items()}
    marks: dict[tuple[str, int], int] = {}
    for m in sorted(by_customer, key=lambda m: (m.partition, m.offset)):
        if not is_control(m.headers) and (cid := customer_of(m.value)) in via:
            origin = forwarded_from(m.headers)
            assert origin is not None, "a forward without its source"
            if origin[1] <= marks.get((cid, origin[0]), -1):
                continue  # forwarded again after a crash: skipped by the customer's mark
            marks[cid, origin[0]] = origin[1]
            out.setdefault(cid, []).append(m.value)
    return out


def change_doc(change: Change) -> bytes:
    """A change's CloudEvent as comparable bytes."""
    return canonical(jsonutil.loads(jsonutil.dumps(cloudevent(change))))


def published_docs(messages: Iterable[Read]) -> tuple[set[bytes], set[str]]:
    """The output's CloudEvents as comparable bytes, and the ids seen with two contents."""
    docs: dict[str, set[bytes]] = defaultdict(set)
    for m in messages:
        doc = m.json()
        docs[doc["id"]].add(canonical(doc))
    return {d for v in docs.values() for d in v}, {k for k, v in docs.items() if len(v) > 1}


def read_by_customer_sync(
    brokers: str, topic: str, partitions: int, after_ms: float, timeout: float = 30.0
) -> list[Read]:
    return asyncio.run(read_by_customer(brokers, topic, partitions, after_ms, timeout))


def now_ms() -> float:
    return time.time() * 1000.0

"""An in-process deployment for the lifecycle tests: the worker's ``Scorer`` over a real
Redis, its Kafka topics as in-memory logs (partitioned by Java's murmur2, like the
broker's clients), read back in batches until nothing is left."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from scoring import CustomerState, decode_state, load_default_model
from stream_app.contracts import cloudevent
from stream_app.messages import OutMessage, Record, Topics, expected_partition
from stream_app.store.keys import Keys, digest
from stream_app.store.lifecycle import LifecycleStore
from stream_app.store.readstore import ReadStore
from stream_app.store.records import decode_record
from stream_app.store.state import StateStore
from stream_app.store.tiercounts import read_tier_counts
from stream_app.worker.scorer import Scorer, ScoringOptions
from stream_app.worker.stats import BatchStats

MODEL = load_default_model()
SECRET = b"test-secret"
DAY_MS = 86_400_000

__all__ = ["MODEL", "SECRET", "Bus", "Deployment", "cloudevent"]


class Bus:
    """Kafka topics as lists of records; a publisher the worker can be handed."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.logs: dict[tuple[str, int], list[Record]] = {}
        self.read: dict[tuple[str, int], int] = {}

    def _partition(self, m: OutMessage) -> int:
        if m.partition is not None:
            return m.partition
        assert m.key is not None
        return expected_partition(m.key.decode(), self.topics.input_partitions)

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        for m in messages:
            tp = (m.topic, self._partition(m))
            log = self.logs.setdefault(tp, [])
            log.append(Record(m.topic, tp[1], len(log), m.key, m.value, time.time(), m.headers))

    async def produce(self, docs: Iterable[Mapping[str, Any]]) -> None:
        await self.publish(
            [
                OutMessage(self.topics.input, str(d["customer_id"]).encode(), orjson.dumps(d))
                for d in docs
            ]
        )

    def pending(self) -> list[Record]:
        """Unread records of both source topics, input partitions first."""
        out: list[Record] = []
        for topic in self.topics.sources:
            for p in range(self.topics.input_partitions):
                log = self.logs.get((topic, p), [])
                out += log[self.read.get((topic, p), 0) :]
        return out

    def mark_read(self, records: Sequence[Record]) -> None:
        for r in records:
            self.read[(r.topic, r.partition)] = max(self.read.get((r.topic, r.partition), 0),
                                                    r.offset + 1)  # fmt: skip

    def out(self, topic: str) -> list[Record]:
        return [r for (t, _), log in sorted(self.logs.items()) if t == topic for r in log]

    def cloudevents(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value or b"") for r in self.out(self.topics.output)]


class Deployment:
    """One scorer (one worker) over a real Redis and a :class:`Bus`."""

    def __init__(
        self, client: aioredis.Redis | RedisCluster, prefix: str, partitions: int = 4
    ) -> None:
        self.topics = Topics("in", "in.by-customer", "out", "dlq", partitions)
        self.bus = Bus(self.topics)
        self.client = client
        self.keys = Keys(prefix, MODEL.name)
        self.store = StateStore(client, self.keys, secret=SECRET)
        self.lifecycle_store = LifecycleStore(
            client, self.keys, secret=SECRET, segments=[r.name for r in MODEL.segments]
        )
        self.scorer = self.new_scorer()

    def new_scorer(self) -> Scorer:
        """A worker's scorer (a fresh one: a restarted worker)."""
        return Scorer(
            model=MODEL,
            topics=self.topics,
            store=self.store,
            publisher=self.bus,
            indexes=ReadStore(self.client, self.keys, MODEL),
            options=ScoringOptions(suppress_ms=3 * DAY_MS, alias_ms=2 * DAY_MS),
            lifecycle_store=self.lifecycle_store,
        )

    async def drain(self, batch: int = 50) -> BatchStats:
        """Process everything the source topics hold, as a worker would, in batches."""
        total = BatchStats()
        while records := self.bus.pending()[:batch]:
            total.add(await self.scorer.process(records))
            self.bus.mark_read(records)
        return total

    async def state(self, customer_id: str) -> CustomerState | None:
        raw = await self.client.get(self.keys.state(customer_id))
        if raw is None:
            return None
        record = decode_record(raw)
        assert record.state is not None
        return decode_state(record.state, MODEL)

    async def suppressed_until(self, customer_id: str) -> float | None:
        """When the customer's entry on the suppression list ends (ms); None: no entry."""
        raw = await self.client.hget(self.keys.suppression(customer_id),
                                     digest(SECRET, customer_id))  # fmt: skip
        return None if raw is None else float(raw)

    async def scan(self, pattern: str) -> list[bytes]:
        """Every key matching ``pattern`` (on a cluster: on every primary)."""
        if isinstance(self.client, RedisCluster):
            nodes = self.client.get_primaries()
            found = [k async for k in self.client.scan_iter(match=pattern, count=1000,
                                                            target_nodes=nodes)]  # fmt: skip
        else:
            found = [k async for k in self.client.scan_iter(match=pattern, count=1000)]
        return sorted(set(found))

    async def dump(self) -> list[tuple[bytes, list[bytes]]]:
        """Every key under the deployment's prefix with every byte string it holds."""
        out = []
        for key in await self.scan(self.keys.base + ":*"):
            kind = (await self.client.type(key)).decode()
            values: list[bytes] = []
            if kind == "string":
                values = [await self.client.get(key)]
            elif kind == "hash":
                for f, v in (await self.client.hgetall(key)).items():
                    values += [f, v]
            elif kind == "zset":
                values = [m for m, _ in await self.client.zrange(key, 0, -1, withscores=True)]
            elif kind == "set":
                values = list(await self.client.smembers(key))
            else:
                raise AssertionError(f"unexpected {kind} at {key!r}")
            out.append((key, values))
        return out

    async def tier_recount(self) -> dict[str, int]:
        """Customers per tier, counted from every stored state."""
        counts = {t.name: 0 for t in MODEL.tiers}
        for key in await self.scan(self.keys.base + ":state:*"):
            record = decode_record(await self.client.get(key))
            assert record.state is not None
            counts[decode_state(record.state, MODEL).tier_name(MODEL)] += 1
        return counts

    async def tier_counts(self) -> dict[str, int]:
        tiers = [t.name for t in MODEL.tiers]
        return dict(zip(tiers, await read_tier_counts(self.client, self.keys, tiers), strict=True))


def request(
    kind: str, customer_id: str, request_id: str, into: str | None = None
) -> dict[str, Any]:
    """An erase or merge request as a producer sends it."""
    doc: dict[str, Any] = {
        "event_id": request_id,
        "customer_id": customer_id,
        "type": f"engagement.customer.{kind}",
        "timestamp": int(time.time() * 1000),
    }
    if into is not None:
        doc["properties"] = {"into": into}
    return doc


def event(event_id: str, customer_id: str, kind: str, ts_ms: int, **props: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"event_id": event_id, "customer_id": customer_id, "type": kind,
                           "timestamp": ts_ms}  # fmt: skip
    if props:
        doc["properties"] = props
    return doc


def two_on_different_partitions(prefix: str, partitions: int = 4, n: int = 2) -> list[str]:
    """``n`` customer ids named ``<prefix>-<k>`` on pairwise different partitions."""
    out: list[str] = []
    seen: set[int] = set()
    k = 0
    while len(out) < n:
        cid = f"{prefix}-{k}"
        p = expected_partition(cid, partitions)
        if p not in seen:
            seen.add(p)
            out.append(cid)
        k += 1
    return out

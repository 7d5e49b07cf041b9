"""Redis state: one fenced record per customer, NPS counters per source partition.

A customer record is ``b"<version> <marks> <state>"``:

* ``version`` counts writes; a write names the version it read and loses if
  another writer got there first (``lua/cas_write.lua``). That fences a worker
  that lost its partitions in a rebalance: it cannot overwrite newer state.
* ``marks`` is ``src=offset,...``: for each source partition the highest offset
  already applied to this customer, so a redelivered message changes nothing.
* ``state`` is :func:`scoring.encode_state`'s bytes.

All reads of a batch go in one pipeline; all writes in one more. On Redis
Cluster, scripts cannot run inside a cluster pipeline (redis-py), so there the
per-customer writes run concurrently instead: still one round trip of latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from .keys import Keys

RedisClient = aioredis.Redis | RedisCluster
ScriptArg = bytes | str | int | float


def _lua(name: str) -> str:
    return resources.files("stream_app").joinpath("lua", name).read_text("utf-8")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """What Redis holds for one customer (version 0 and no state: unknown customer)."""

    version: int = 0
    marks: Mapping[str, int] = field(default_factory=dict)
    state: bytes | None = None
    explain: bytes | None = None


def encode_record(version: int, marks: Mapping[str, int], state: bytes) -> bytes:
    """Pack a record.

    >>> encode_record(3, {"i1": 40}, b"[1]")
    b'3 i1=40 [1]'
    """
    mark_text = ",".join(f"{k}={v}" for k, v in sorted(marks.items())) or "-"
    return f"{version} {mark_text} ".encode() + state


def decode_record(raw: bytes) -> StoredRecord:
    """Unpack a record written by :func:`encode_record`.

    >>> decode_record(b'3 i1=40,r1=2 [1]')
    StoredRecord(version=3, marks={'i1': 40, 'r1': 2}, state=b'[1]', explain=None)
    """
    version, mark_text, state = raw.split(b" ", 2)
    marks: dict[str, int] = {}
    if mark_text != b"-":
        for item in mark_text.decode().split(","):
            name, offset = item.split("=")
            marks[name] = int(offset)
    return StoredRecord(int(version), marks, state)


def connect(url: str) -> RedisClient:
    """A client for ``redis://``, ``rediss://``, ``unix://`` or a cluster URL.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) names any node of a
    Redis Cluster; the client discovers the others.
    """
    common: dict[str, Any] = {"socket_timeout": 10.0, "socket_connect_timeout": 5.0}
    if "+cluster://" in url:
        return RedisCluster.from_url(url.replace("+cluster://", "://", 1), **common)
    return aioredis.from_url(url, health_check_interval=30, **common)


@dataclass(frozen=True, slots=True)
class Write:
    """One fenced state write: the version read, and the new record's parts."""

    customer_id: str
    read_version: int
    marks: Mapping[str, int]
    state: bytes
    due_partition: int = 0
    due_at_ms: float | None = None  # the new state's next decay crossing
    explain: bytes | None = None  # written with the state, atomically, when given


class StateStore:
    """Async access to customer records and NPS counters in Redis."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.is_cluster = isinstance(client, RedisCluster)
        self._cas = client.register_script(_lua("cas_write.lua"))
        self._nps_add = client.register_script(_lua("nps_add.lua"))
        self._reschedule = client.register_script(_lua("due_reschedule.lua"))

    async def load(
        self, customer_ids: Sequence[str], *, explain: bool = False
    ) -> dict[str, StoredRecord]:
        """Records of the given customers (and their explanations), in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for cid in customer_ids:
            pipe.get(self.keys.state(cid))
            if explain:
                pipe.get(self.keys.explain(cid))
        raws = await pipe.execute()
        step = 2 if explain else 1
        out: dict[str, StoredRecord] = {}
        for i, cid in enumerate(customer_ids):
            raw = raws[i * step]
            record = decode_record(raw) if raw is not None else StoredRecord()
            if explain and raws[i * step + 1] is not None:
                record = replace(record, explain=raws[i * step + 1])
            out[cid] = record
        return out

    async def write(self, writes: Sequence[Write]) -> list[str]:
        """Apply fenced writes; return the customers whose write lost a race.

        Each customer's next crossing goes into its partition's due index first,
        with ``ZADD LT`` (an entry only moves earlier): a crash between the two
        leaves at worst an early entry, which the decay sweep re-checks and
        reschedules; never a missing one.
        """
        if not writes:
            return []
        await self._schedule(writes)
        calls: list[tuple[list[str], list[ScriptArg]]] = []
        for w in writes:
            keys = [self.keys.state(w.customer_id)]
            args: list[ScriptArg] = [
                w.read_version,
                encode_record(w.read_version + 1, w.marks, w.state),
            ]
            if w.explain is not None:
                keys.append(self.keys.explain(w.customer_id))
                args.append(w.explain)
            calls.append((keys, args))
        if self.is_cluster:
            results = await asyncio.gather(*(self._cas(keys=k, args=a) for k, a in calls))
        else:
            pipe = self.client.pipeline(transaction=False)
            for k, a in calls:
                await self._cas(keys=k, args=a, client=cast(Any, pipe))
            results = await pipe.execute()
        return [w.customer_id for w, r in zip(writes, results, strict=True) if int(r) != -1]

    async def _schedule(self, writes: Sequence[Write]) -> None:
        due: dict[int, dict[str, float]] = {}
        for w in writes:
            if w.due_at_ms is not None:
                due.setdefault(w.due_partition, {})[w.customer_id] = w.due_at_ms
        if not due:
            return
        pipe = self.client.pipeline(transaction=False)
        for partition, members in due.items():
            pipe.zadd(self.keys.due(partition), cast(Any, members), lt=True)
        await pipe.execute()

    async def due(self, partition: int, until_ms: float, limit: int) -> list[tuple[str, float]]:
        """Customers of ``partition`` whose next crossing is at or before ``until_ms``."""
        raw = cast(
            list[tuple[bytes, float]],
            await self.client.zrangebyscore(
                self.keys.due(partition), "-inf", until_ms, start=0, num=limit, withscores=True
            ),
        )
        return [(m.decode(), float(t)) for m, t in raw]

    async def reschedule(
        self, partition: int, entries: Mapping[str, tuple[float, float | None]]
    ) -> None:
        """After a sweep: move each customer from the time it was read at to its next
        crossing (None: drop), unless someone moved it meanwhile (``lua/due_reschedule.lua``).
        """
        if not entries:
            return
        args: list[ScriptArg] = []
        for cid, (old, new) in entries.items():
            args += [cid, repr(old), "" if new is None else repr(new)]
        await self._reschedule(keys=[self.keys.due(partition)], args=args)

    async def due_size(self, partition: int) -> int:
        """How many customers wait in ``partition``'s due index."""
        return int(await self.client.zcard(self.keys.due(partition)))

    async def add_nps(self, counts: Mapping[tuple[str, int], Sequence[tuple[int, str]]]) -> int:
        """Count NPS responses: per source partition, ``(offset, field)`` pairs.

        Idempotent per offset (see ``lua/nps_add.lua``). Returns how many counted.
        """
        if not counts:
            return 0
        calls = []
        for (topic, partition), items in counts.items():
            args: list[ScriptArg] = []
            for offset, fld in sorted(items):
                args += [offset, fld, 1]
            calls.append(([self.keys.nps_counts(topic, partition)], args, f"{topic}:{partition}"))
        sources = [c[2] for c in calls]
        if self.is_cluster:
            done = await asyncio.gather(*(self._nps_add(keys=k, args=a) for k, a, _ in calls))
            await self.client.sadd(self.keys.nps_sources(), *sources)
            return sum(int(x) for x in done)
        pipe = self.client.pipeline(transaction=False)
        for k, a, _ in calls:
            await self._nps_add(keys=k, args=a, client=cast(Any, pipe))
        pipe.sadd(self.keys.nps_sources(), *sources)
        results = await pipe.execute()
        return sum(int(x) for x in results[:-1])

    async def nps_counts(self) -> dict[str, int]:
        """All NPS counters summed over source partitions (``_wm`` excluded)."""
        sources = cast(set[bytes], await self.client.smembers(self.keys.nps_sources()))
        total: dict[str, int] = {}
        for src in sorted(s.decode() for s in sources):
            topic, partition = src.rsplit(":", 1)
            key = self.keys.nps_counts(topic, int(partition))
            raw = cast(dict[bytes, bytes], await self.client.hgetall(key))
            for k, v in raw.items():
                name = k.decode()
                if name != "_wm":
                    total[name] = total.get(name, 0) + int(v)
        return total


def nps_field(day: str, tier: str, category: str) -> str:
    """The counter name of one (day, tier, category); tier ``*`` is the overall count."""
    return f"{day}|{tier}|{category}"


def nps_fields(day: str, tier: str, category: str) -> Iterable[str]:
    """Both counters one response increments: overall and by tier."""
    return (nps_field(day, "*", category), nps_field(day, tier, category))

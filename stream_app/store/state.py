"""Redis state: one fenced record per customer, NPS counters per source partition.

A customer record (its layout and fence token: :mod:`stream_app.store.records`) is read
by one script call and written by a fenced script call.

A batch costs two round trips to the record store: one script call that reads its
customers' records (``lua/load_records.lua``: the records, and which keys hold another
Redis type), and one pipeline with every write (NPS counters, read-side indexes, due
index, then one script call that fences every record, and refuses to create the record
of a customer on the suppression list: see :mod:`stream_app.store.lifecycle`). Scripts
are called by SHA; should Redis have lost them (restart, ``SCRIPT FLUSH``), they are
loaded again and the call or pipeline, whose every command is idempotent, is sent again.
On Redis Cluster a script only sees keys of one slot, so there the reads are one ``MGET``
per slot, sent together (then ``EXISTS`` of the keys found missing, to tell a key of
another type), and the per-customer writes run concurrently: one or two round trips of
latency each.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from stream_app.errors import StreamAppError
from stream_app.store.keys import Keys, digest, slot_of
from stream_app.store.records import (
    RECORD_FORMAT,
    Command,
    CustomerRecord,
    RecordFault,
    ScriptArg,
    Write,
    encode_record,
    read_record,
)

log = logging.getLogger(__name__)

RedisClient = aioredis.Redis | RedisCluster


class StoreUnavailable(StreamAppError):
    """Redis could not be reached, or refused a request."""

    @classmethod
    def from_redis(cls, exc: redis.exceptions.RedisError) -> StoreUnavailable:
        return cls(f"Redis unreachable or refused the request ({exc or type(exc).__name__})")


def lua_source(name: str) -> str:
    """The text of ``stream_app/store/lua/<name>``."""
    return resources.files("stream_app.store").joinpath("lua", name).read_text("utf-8")


def connect(url: str, name: str | None = None) -> RedisClient:
    """A client for ``redis://``, ``rediss://``, ``unix://`` or a cluster URL.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) names any node of a
    Redis Cluster; the client discovers the others. ``name`` is set on every
    connection (``CLIENT SETNAME``), so ``CLIENT LIST`` tells which process is which.
    """
    common: dict[str, Any] = {"socket_timeout": 10.0, "socket_connect_timeout": 5.0}
    if name:
        common["client_name"] = name
    if "+cluster://" in url:
        return RedisCluster.from_url(url.replace("+cluster://", "://", 1), **common)
    return aioredis.from_url(url, health_check_interval=30, **common)


class _Script:
    """A Lua script called by SHA (``EVALSHA``, or ``EVALSHA_RO`` for one that only reads:
    flagged ``no-writes``, it runs where writes are paused or refused, and Redis counts
    its calls apart from the writing scripts'); loaded into Redis on ``NOSCRIPT``."""

    def __init__(self, name: str, *, read_only: bool = False) -> None:
        self.source = lua_source(name)
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()  # as SCRIPT LOAD's
        self.call = "EVALSHA_RO" if read_only else "EVALSHA"

    def command(self, keys: Sequence[str], args: Sequence[ScriptArg]) -> Command:
        return (self.call, self.sha, len(keys), *keys, *args)


class StateStore:
    """Async access to customer records and NPS counters in Redis."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        *,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
        record_format: int = RECORD_FORMAT,
    ) -> None:
        self.client = client
        self.keys = keys
        self.record_format = record_format  # 1: the previous release's (WRITE_FORMAT)
        #: The suppression list's key (None: writes do not check it; the erased customers
        #: of a store that handles no erase requests).
        self.secret = secret
        self.clock = clock
        self.is_cluster = isinstance(client, RedisCluster)
        self._cas = _Script("cas_write.lua")
        self._nps_add = _Script("nps_add.lua")
        self._reschedule = _Script("due_reschedule.lua")
        self._load = _Script("load_records.lua", read_only=True)
        self._scripts = (self._cas, self._nps_add, self._reschedule, self._load)

    async def load_scripts(self) -> None:
        """Load the Lua scripts (idempotent; redis-py sends it to every cluster primary)."""
        for script in self._scripts:
            await self.client.script_load(script.source)

    async def _run(self, script: _Script, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        """One script call, outside any pipeline."""
        try:
            return await self.client.execute_command(*script.command(keys, args))
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts
            await self.load_scripts()
            return await self.client.execute_command(*script.command(keys, args))

    async def _pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Send commands in one pipeline (one round trip), in order; their replies.

        Every command queued here is idempotent, so after ``NOSCRIPT`` (the scripts were
        lost) the whole pipeline is sent again once the scripts are loaded. A reply that
        is an error retrying may cure (``OOM``, ``BUSY``, ``READONLY``...) raises it; one
        that is a refusal for good (``WRONGTYPE`` on a shared key, say) is logged and
        left in the replies, so that one broken key cannot stall every batch.
        """
        if not commands:
            return []
        replies: list[Any] = []
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for c in commands:
                pipe.execute_command(*c)
            replies = await pipe.execute(raise_on_error=False)
            lost_scripts = any(isinstance(r, redis.exceptions.NoScriptError) for r in replies)
            if not lost_scripts:
                break
            if attempt == 2:
                raise next(r for r in replies if isinstance(r, redis.exceptions.NoScriptError))
            await self.load_scripts()
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(reply, Exception):
                if not is_refusal(reply):
                    raise reply
                log.error(
                    "Redis refused %s %s for good (%s); the batch goes on without it",
                    command[0],
                    _key_of(command),
                    reply,
                )
        return replies

    async def load(self, customer_ids: Sequence[str]) -> dict[str, CustomerRecord]:
        """Records (with explanations) of the given customers: one script call.

        A record that does not decode comes back with a ``corrupt_state`` fault; a state
        key that holds another Redis type with a ``store_rejected`` one (its type asked
        with ``TYPE``, only for such keys). On Redis Cluster, one ``MGET`` per slot, sent
        together, and one ``EXISTS`` of the keys found missing when there are any.
        """
        if not customer_ids:
            return {}
        keys = [self.keys.state(cid) for cid in customer_ids]
        if self.is_cluster:
            raws = await self._mget_cluster(keys)
        else:
            raws = await self._run(self._load, keys, ())
        out: dict[str, CustomerRecord] = {}
        other: list[tuple[str, str]] = []  # (customer, key) of keys of another type
        for cid, key, raw in zip(customer_ids, keys, raws, strict=True):
            if raw is None:
                out[cid] = CustomerRecord()
            elif isinstance(raw, int):
                out[cid] = CustomerRecord()  # (its fault, if any, below: the order is kept)
                other.append((cid, key))
            else:
                out[cid] = read_record(raw)
        if other:
            pipe = self.client.pipeline(transaction=False)
            for _, key in other:
                pipe.type(key)
            for (cid, _), kind in zip(other, await pipe.execute(), strict=True):
                name = kind.decode() if isinstance(kind, bytes) else str(kind)
                # ("none": no key, or deleted since: a customer without a record)
                out[cid] = (
                    CustomerRecord(fault=wrong_type(name)) if name != "none" else CustomerRecord()
                )
        return out

    async def _mget_cluster(self, keys: Sequence[str]) -> list[bytes | int | None]:
        """Per key: its value, None when missing, 0 when it may hold another type (every
        missing key, when ``EXISTS`` finds any of them)."""
        raws: list[bytes | int | None] = list(
            await cast(RedisCluster, self.client).mget_nonatomic(keys)
        )
        absent = [i for i, raw in enumerate(raws) if raw is None]
        if absent and await self.client.exists(*(keys[i] for i in absent)):
            for i in absent:  # some hold another type: TYPE tells which
                raws[i] = 0
        return raws

    async def commit(
        self,
        writes: Sequence[Write],
        *,
        nps: Mapping[tuple[str, int], Sequence[tuple[int, str]]] | None = None,
        index: Sequence[Command] = (),
    ) -> list[str]:
        """Count NPS responses, update indexes, then apply the fenced record writes.

        In this order, in one pipeline; returns the customers whose write lost a race.
        Each customer's next crossing goes into its partition's due index before its
        record, with ``ZADD LT`` (an entry only moves earlier): a crash between the two
        leaves at worst an early entry, which the decay sweep re-checks and reschedules;
        never a missing one.
        """
        nps_calls = self._nps_commands(nps or {})
        due = self._due_commands(writes)
        records = [self._record(w) for w in writes]
        now = int(self.clock() * 1000)
        if self.is_cluster:
            return await self._commit_cluster(writes, nps_calls, [*index, *due], records, now)
        commands = [*nps_calls, *index, *due]
        if records:
            args: list[ScriptArg] = [now]
            keys = [self.keys.tier_counts()]
            for record_keys, record_args in records:
                keys += record_keys
                args += record_args
            commands.append(self._cas.command(keys, args))
        replies = await self._pipeline(commands)
        if not records:
            return []
        if isinstance(replies[-1], Exception):
            raise replies[-1]  # (the fenced write itself was refused: no record written)
        return [writes[int(i) - 1].customer_id for i in _lost(replies[-1])]

    def _record(self, w: Write) -> tuple[list[str], list[ScriptArg]]:
        """One customer's keys (state, suppression hash) and arguments in cas_write.lua.

        Only a write that read no record (fence ``"0"``) can create one, so only such a
        write is checked against the suppression list; the others name their state key in
        its place (the same slot) and no keyed hash, which costs nothing."""
        cid = w.customer_id
        v, fmt = w.read_version + 1, self.record_format
        record = encode_record(v, w.marks, w.state, w.explain, w.token, record_format=fmt)
        state = self.keys.state(cid)
        if self.secret is None or w.fence != "0":
            return [state, state], [w.fence, record, *w.tier_move, ""]
        field = digest(self.secret, cid)
        return [state, self.keys.suppression(cid)], [w.fence, record, *w.tier_move, field]

    async def _commit_cluster(
        self,
        writes: Sequence[Write],
        nps_calls: Sequence[Command],
        commands: Sequence[Command],
        records: Sequence[tuple[list[str], list[ScriptArg]]],
        now: int,
    ) -> list[str]:
        """:meth:`commit` on Redis Cluster: scripts one slot at a time, concurrently.

        Each customer's write goes with the tier-counts and suppression hashes of its slot.
        """
        scripts = [c for c in nps_calls if c[0] == "EVALSHA"]
        counted = await asyncio.gather(
            *(self._run(self._nps_add, [str(c[3])], c[4:]) for c in scripts),
            return_exceptions=True,
        )
        for c, reply in zip(scripts, counted, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, Exception) or not is_refusal(reply):
                    raise reply
                log.error("Redis refused NPS counting on %s for good (%s)", c[3], reply)
        await self._pipeline([*(c for c in nps_calls if c[0] != "EVALSHA"), *commands])
        lost = await asyncio.gather(
            *(
                self._run(self._cas, [self.keys.tier_counts(slot_of(keys[0])), *keys], [now, *args])
                for keys, args in records
            )
        )
        return [w.customer_id for w, r in zip(writes, lost, strict=True) if _lost(r)]

    def _due_commands(self, writes: Sequence[Write]) -> list[Command]:
        due: dict[int, list[ScriptArg]] = {}
        for w in writes:
            if w.due_at_ms is not None:
                due.setdefault(w.due_partition, []).extend((repr(w.due_at_ms), w.customer_id))
        return [("ZADD", self.keys.due(p), "LT", *members) for p, members in due.items()]

    def _nps_commands(
        self, counts: Mapping[tuple[str, int], Sequence[tuple[int, str]]]
    ) -> list[Command]:
        calls: list[Command] = []
        for (topic, partition), items in counts.items():
            args: list[ScriptArg] = []
            for offset, fld in sorted(items):
                args += [offset, fld, 1]
            calls.append(self._nps_add.command([self.keys.nps_counts(topic, partition)], args))
        if calls:
            sources = sorted({f"{t}:{p}" for t, p in counts})
            calls.append(("SADD", self.keys.nps_sources(), *sources))
        return calls

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
        await self._run(self._reschedule, [self.keys.due(partition)], args)

    async def ping(self) -> None:
        """One round trip to Redis (raises when it is unreachable)."""
        await self.client.ping()

    async def due_size(self, partition: int) -> int:
        """How many customers wait in ``partition``'s due index."""
        return int(await self.client.zcard(self.keys.due(partition)))

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


def is_refusal(exc: Exception) -> bool:
    """True for an error reply Redis gives for good (``WRONGTYPE``, ``ERR ...``: a value
    that is not a number, a script error), False for one that retrying may cure.

    >>> is_refusal(redis.exceptions.ResponseError("WRONGTYPE Operation against a key"))
    True
    >>> is_refusal(redis.exceptions.OutOfMemoryError("command not allowed when used memory"))
    False
    """
    if type(exc) is not redis.exceptions.ResponseError:  # subclasses: OOM, READONLY, ...
        return False
    return str(exc).startswith(("WRONGTYPE", "ERR")) or getattr(exc, "status_code", None) in (
        "WRONGTYPE",
        "ERR",
    )


def wrong_type(kind: str) -> RecordFault:
    """The fault of a customer whose state key holds another Redis type."""
    return "store_rejected", f"WRONGTYPE: the customer's state key holds a {kind}, not a string"


def _lost(reply: Any) -> list[int]:
    """The (1-based) indexes of lost writes in a ``cas_write.lua`` reply (a count error
    it reports as a string is logged)."""
    out = []
    for item in reply:
        if isinstance(item, int):
            out.append(item)
        else:
            log.error("Redis refused a tier-count update for good: %s", item)
    return out


def _key_of(command: Command) -> str:
    """The key a raw command names (for logs)."""
    if command[0] in ("EVALSHA", "EVALSHA_RO") and len(command) > 3:
        return str(command[3])
    return str(command[1]) if len(command) > 1 else ""

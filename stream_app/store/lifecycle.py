"""Redis side of erasing and merging customers: suppression list, aliases, removals.

* An erased customer is remembered only by its keyed hash (the hex HMAC-SHA256 of its
  id under a configured secret), for a configured time, in the suppression hash of its
  Redis Cluster slot (``suppression:{<tag>}``, ``lua/suppress.lua``): its later events
  are dropped, and the fenced write refuses to create its record again (a worker that
  read the customer before the erase and wakes up after it loses its write: it reads
  again, finds the customer erased and drops its events). Its record, alias, due entry
  and segment memberships go, and the tier counts lose it, in the order of a batch's
  writes: the suppression and idempotent removals first, then the fenced delete
  (``lua/erase.lua``), then the aliases that named it. The suppression keys of earlier
  releases (``suppressed:{<digest>}``, one per customer) are still read until they
  expire.
* A customer merged into another leaves ``alias:{<customer>}`` (the survivor's id, for
  a configured time) in the same script call that deletes its record
  (``lua/merge_retire.lua``); the survivor's ``aliases:{<survivor>}`` lists it, so that
  erasing the survivor also drops the aliases naming it.

Every command here is idempotent, so a request redelivered after a crash does the
same again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from stream_app.store.keys import Keys, digest, slot_of
from stream_app.store.records import Command, LifecycleStatus, ScriptArg
from stream_app.store.state import RedisClient, _Script

__all__ = ["LifecycleStore", "digest"]


class LifecycleStore:
    """Suppression list, aliases, and the fenced removal of customer records."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        *,
        secret: bytes,
        segments: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.keys = keys
        self.secret = secret
        self.segments = tuple(segments)
        self.clock = clock
        self.is_cluster = isinstance(client, RedisCluster)
        self._erase = _Script("erase.lua")
        self._retire = _Script("merge_retire.lua")
        self._alias_drop = _Script("alias_drop.lua")
        self._suppress = _Script("suppress.lua")
        self._scripts = (self._erase, self._retire, self._alias_drop, self._suppress)

    def digest(self, customer_id: str) -> str:
        """The suppression list's name for ``customer_id``."""
        return digest(self.secret, customer_id)

    async def lookup(self, customer_ids: Sequence[str]) -> dict[str, LifecycleStatus]:
        """Of these customers (none of them has a record), the erased and the merged ones:
        one ``MGET``."""
        if not customer_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for cid in customer_ids:
            hashed = self.digest(cid)
            pipe.hget(self.keys.suppression(cid), hashed)
            pipe.get(self.keys.suppressed(hashed))  # (an earlier release's entry)
            pipe.get(self.keys.alias(cid))
        raws = await pipe.execute()
        now = self.clock() * 1000
        out: dict[str, LifecycleStatus] = {}
        for i, cid in enumerate(customer_ids):
            ends, legacy, alias = raws[3 * i : 3 * i + 3]
            if (ends is not None and float(ends) > now) or legacy is not None:
                out[cid] = LifecycleStatus("suppressed")
            elif alias is not None:
                into = alias.decode() if isinstance(alias, bytes) else str(alias)
                out[cid] = LifecycleStatus("alias", into)
        return out

    async def alias(self, customer_id: str) -> str | None:
        """The customer ``customer_id`` was merged into, while its alias lives."""
        raw = await self.client.get(self.keys.alias(customer_id))
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def is_suppressed(self, customer_id: str) -> bool:
        """True while ``customer_id`` is on the suppression list."""
        status = (await self.lookup([customer_id])).get(customer_id)
        return status is not None and status.kind == "suppressed"

    async def suppress(self, customer_id: str, *, suppress_ms: int) -> None:
        """Put ``customer_id`` on its slot's suppression list for ``suppress_ms`` (an
        entry only moves later; the slot's ended entries are pruned)."""
        now = int(self.clock() * 1000)
        args: list[ScriptArg] = [self.digest(customer_id), now, suppress_ms]
        await self._run(self._suppress, [self.keys.suppression(customer_id)], args)

    async def erase(
        self,
        customer_id: str,
        *,
        fence: str,
        tier: str,
        partition: int,
        suppress_ms: int,
        now_ms: float,
    ) -> list[str] | None:
        """Suppress, unindex and delete one customer (``fence``/``tier``: of the record
        read, :attr:`~stream_app.store.records.CustomerRecord.fence`; ``"*"`` deletes a
        record that could not be read, whatever it holds). None when the record changed
        since (nothing deleted); else the customers still aliased to it, for
        :meth:`drop_aliases`."""
        keys = self.keys
        await self.suppress(customer_id, suppress_ms=suppress_ms)
        await self._send(self._unindex(customer_id, partition))
        state_key = keys.state(customer_id)
        reply = await self._run(
            self._erase,
            [
                self._tier_counts(state_key),
                state_key,
                keys.alias(customer_id),
                keys.aliases_of(customer_id),
            ],
            [fence, tier, int(now_ms)],
        )
        if not reply or int(reply[0]) == 0:
            return None
        return [m.decode() if isinstance(m, bytes) else str(m) for m in reply[1:]]

    async def drop_aliases(
        self, customer_id: str, merged: Sequence[str], *, suppress_ms: int
    ) -> None:
        """After an erase: the customers merged into ``customer_id`` are erased too (their
        aliases dropped, their keyed hashes suppressed); then its aliases key goes."""
        for other in merged:
            await self.forget_merged(other, customer_id, suppress_ms=suppress_ms)
        await self._send([("DEL", self.keys.aliases_of(customer_id))])

    async def forget_merged(self, source: str, into: str, *, suppress_ms: int) -> None:
        """``source`` was merged into ``into``, which is erased: drop the alias naming
        ``into`` and suppress ``source`` (the same person)."""
        await self.suppress(source, suppress_ms=suppress_ms)
        await self._run(self._alias_drop, [self.keys.alias(source)], [into])

    async def retire(
        self,
        customer_id: str,
        *,
        fence: str,
        tier: str,
        partition: int,
        into: str,
        alias_ms: int,
        now_ms: float,
    ) -> bool:
        """Unindex and delete a customer merged into ``into``, leaving an alias (``fence``:
        of the record read); False when the record changed since it was read (nothing
        deleted)."""
        aliases = self.keys.aliases_of(into)
        await self._send(
            [
                ("ZADD", aliases, int(now_ms) + alias_ms, customer_id),
                ("ZREMRANGEBYSCORE", aliases, "-inf", f"({int(now_ms)}"),
                ("PEXPIRE", aliases, alias_ms),
                *self._unindex(customer_id, partition),
            ]
        )
        state_key = self.keys.state(customer_id)
        reply = await self._run(
            self._retire,
            [self._tier_counts(state_key), state_key, self.keys.alias(customer_id)],
            [fence, tier, into, alias_ms],
        )
        return bool(int(reply))

    def _unindex(self, customer_id: str, partition: int) -> list[Command]:
        """Out of every segment member set and out of its partition's due index."""
        commands: list[Command] = [
            ("ZREM", self.keys.segment_members(name), customer_id) for name in self.segments
        ]
        commands.append(("ZREM", self.keys.due(partition), customer_id))
        return commands

    def _tier_counts(self, state_key: str) -> str:
        return self.keys.tier_counts(slot_of(state_key) if self.is_cluster else None)

    async def _send(self, commands: Sequence[Command]) -> None:
        """Plain (idempotent) commands in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for c in commands:
            pipe.execute_command(*c)
        await pipe.execute()

    async def _run(self, script: _Script, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        """One script call by SHA, loading the script if Redis does not have it."""
        try:
            return await self.client.execute_command(*script.command(keys, args))
        except redis.exceptions.NoScriptError:
            await asyncio.gather(*(self.client.script_load(s.source) for s in self._scripts))
            return await self.client.execute_command(*script.command(keys, args))

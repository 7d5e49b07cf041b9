"""Redis side of erasing and merging customers: suppression list, aliases, removals.

* An erased customer is remembered only as ``suppressed:{<digest>}``, the hex
  HMAC-SHA256 of its id under a configured secret, for a configured time: its later
  events are dropped. Its record, alias, due entry and segment memberships go, and the
  tier counts lose it, in the order of a batch's writes: idempotent removals first,
  then the fenced delete (``lua/erase.lua``), then the aliases that named it.
* A customer merged into another leaves ``alias:{<customer>}`` (the survivor's id, for
  a configured time) in the same script call that deletes its record
  (``lua/merge_retire.lua``); the survivor's ``aliases:{<survivor>}`` lists it, so that
  erasing the survivor also drops the aliases naming it.

Every command here is idempotent, so a request redelivered after a crash does the
same again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, cast

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from stream_app.store.keys import Keys, slot_of
from stream_app.store.records import Command, LifecycleStatus, ScriptArg
from stream_app.store.state import RedisClient, _Script


def digest(secret: bytes, customer_id: str) -> str:
    """The keyed hash that names an erased customer in the suppression list.

    >>> digest(b"k", "c-1") == digest(b"k", "c-1") != digest(b"other", "c-1")
    True
    """
    return hmac.new(secret, customer_id.encode(), hashlib.sha256).hexdigest()


class LifecycleStore:
    """Suppression list, aliases, and the fenced removal of customer records."""

    def __init__(
        self, client: RedisClient, keys: Keys, *, secret: bytes, segments: Sequence[str]
    ) -> None:
        self.client = client
        self.keys = keys
        self.secret = secret
        self.segments = tuple(segments)
        self.is_cluster = isinstance(client, RedisCluster)
        self._erase = _Script("erase.lua")
        self._retire = _Script("merge_retire.lua")
        self._alias_drop = _Script("alias_drop.lua")

    def digest(self, customer_id: str) -> str:
        """The suppression list's name for ``customer_id``."""
        return digest(self.secret, customer_id)

    async def lookup(self, customer_ids: Sequence[str]) -> dict[str, LifecycleStatus]:
        """Of these customers (none of them has a record), the erased and the merged ones:
        one ``MGET``."""
        if not customer_ids:
            return {}
        keys: list[str] = []
        for cid in customer_ids:
            keys += [self.keys.suppressed(self.digest(cid)), self.keys.alias(cid)]
        if self.is_cluster:
            raws = await cast(RedisCluster, self.client).mget_nonatomic(keys)
        else:
            raws = await self.client.mget(keys)
        out: dict[str, LifecycleStatus] = {}
        for i, cid in enumerate(customer_ids):
            suppressed, alias = raws[2 * i], raws[2 * i + 1]
            if suppressed is not None:
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
        return bool(await self.client.exists(self.keys.suppressed(self.digest(customer_id))))

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
        await self._send(
            [
                ("SET", keys.suppressed(self.digest(customer_id)), "1", "PX", suppress_ms),
                *self._unindex(customer_id, partition),
            ]
        )
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
        await self._send(
            [("SET", self.keys.suppressed(self.digest(source)), "1", "PX", suppress_ms)]
        )
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
            await asyncio.gather(
                *(self.client.script_load(s.source) for s in (self._erase, self._retire,
                                                              self._alias_drop))
            )  # fmt: skip
            return await self.client.execute_command(*script.command(keys, args))

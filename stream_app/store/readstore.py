"""Read-side indexes in Redis: who is in each segment, how many in each tier, tier moves.

These are derived data, rebuilt from customer states as they change:

* ``segment:<name>``: sorted sets with every score 0, so a member list pages by
  member (``ZRANGE ... BYLEX``) with a stable cursor even while members come and
  go; counts are ``ZCARD``.
* ``tier-counts``: customers per tier, moved by the fenced record write itself
  (:mod:`stream_app.store.tiercounts`); no member list, so no memory per customer.
* ``tier-moves:<name>:in|out``: change id -> time, so "entered in the last
  hour" is a ``ZCOUNT``; re-publishing a change (same id) counts once.

The segment sets and tier moves are written before the customer's fenced state write
(in the same pipeline, see :meth:`stream_app.store.state.StateStore.commit`), idempotently
(a member is set to what the new state says), so a crash in between leaves them
ahead of the state and a redelivery writes the same again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import cast

from scoring import Change, Model
from stream_app.store.keys import Keys
from stream_app.store.records import Command, Membership, ScriptArg
from stream_app.store.state import RedisClient
from stream_app.store.tiercounts import read_tier_counts

#: How long tier moves are kept (the API reports the last hour and day).
MOVES_KEPT_MS = 2 * 86_400_000


class ReadStore:
    """Writes and queries of the read-side indexes."""

    def __init__(self, client: RedisClient, keys: Keys, model: Model) -> None:
        self.client = client
        self.keys = keys
        self.model = model

    def commands(
        self,
        members: Mapping[str, Membership],
        changes: Sequence[Change],
        now_ms: float,
        *,
        previous: Mapping[str, Membership | None] | None = None,
    ) -> list[Command]:
        """The Redis commands that set these memberships and record these tier moves.

        For a customer in ``previous`` only the sets whose membership differs from its
        previous standing (None: a new customer) are written; the others are re-asserted
        in full (every set: in or out). One ``ZADD`` and one ``ZREM`` per set at most.
        """
        previous = previous or {}
        adds: dict[str, list[ScriptArg]] = defaultdict(list)
        removes: dict[str, list[ScriptArg]] = defaultdict(list)
        for cid, m in members.items():
            full = cid not in previous
            old = previous.get(cid)
            for key, is_in, was_in in self._sets(m, old):
                if full or is_in != was_in:
                    if is_in:
                        adds[key] += (0, cid)
                    else:
                        removes[key].append(cid)
        moves: dict[str, list[ScriptArg]] = defaultdict(list)
        for c in changes:
            if c.kind != "tier":
                continue
            if c.to_tier is not None:
                moves[self.keys.tier_moves(c.to_tier, "in")] += (c.occurred_at_ms, c.change_id)
            if c.from_tier is not None:
                moves[self.keys.tier_moves(c.from_tier, "out")] += (c.occurred_at_ms, c.change_id)
        out: list[Command] = [("ZREM", key, *cids) for key, cids in removes.items()]
        out += [("ZADD", key, *pairs) for key, pairs in adds.items()]
        for key, pairs in moves.items():
            out.append(("ZADD", key, *pairs))
            out.append(("ZREMRANGEBYSCORE", key, "-inf", now_ms - MOVES_KEPT_MS))
        return out

    def _sets(self, new: Membership, old: Membership | None) -> list[tuple[str, bool, bool]]:
        """Every member set with (key, in it now, in it before)."""
        return [
            (self.keys.segment_members(r.name), r.name in new, old is not None and r.name in old)
            for r in self.model.segments
        ]

    async def tier_counts(self, now_ms: float) -> dict[str, dict[str, int]]:
        """Per tier: customers now, entered and left in the last hour and day."""
        names = [t.name for t in self.model.tiers]
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            for direction in ("in", "out"):
                key = self.keys.tier_moves(name, direction)
                pipe.zcount(key, now_ms - 3_600_000, "+inf")
                pipe.zcount(key, now_ms - 86_400_000, "+inf")
        raw = [int(x) for x in await pipe.execute()]
        customers = await read_tier_counts(self.client, self.keys, names)
        out: dict[str, dict[str, int]] = {}
        for i, name in enumerate(names):
            now = customers[i]
            in_h, in_d, out_h, out_d = raw[i * 4 : i * 4 + 4]
            out[name] = {
                "customers": now,
                "entered_last_hour": in_h,
                "entered_last_day": in_d,
                "left_last_hour": out_h,
                "left_last_day": out_d,
            }
        return out

    async def segment_counts(self) -> dict[str, int]:
        """How many customers each rule segment holds now."""
        pipe = self.client.pipeline(transaction=False)
        for rule in self.model.segments:
            pipe.zcard(self.keys.segment_members(rule.name))
        counts = await pipe.execute()
        return {r.name: int(n) for r, n in zip(self.model.segments, counts, strict=True)}

    async def members(
        self, key: str, *, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        """One page of a member set after ``cursor``; the next cursor or None at the end."""
        start = "-" if not cursor else f"({cursor}"
        raw = cast(
            list[bytes],
            await self.client.zrangebylex(key, start, "+", start=0, num=limit + 1),
        )
        page = [m.decode() for m in raw[:limit]]
        return page, (page[-1] if len(raw) > limit and page else None)

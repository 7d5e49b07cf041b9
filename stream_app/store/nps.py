"""Reading the NPS day counters for a window, and keeping them bounded.

The counters live in one hash per source partition (``nps:{<topic>:<partition>}``,
written by ``lua/nps_add.lua``): ``<YYYY-MM-DD>|<tier or *>|<category>`` -> count.

* :meth:`NpsCounters.window` reads only the fields of the days asked for: one ``HMGET``
  per source partition, all in one pipeline, however many days the hashes hold.
* :meth:`NpsCounters.prune` deletes the counters of days before a cutoff
  (``lua/nps_prune.lua``); the owner of each partition runs it about once an hour with
  the cutoff ``ENGAGEMENT_NPS_RETENTION_DAYS`` before today, so the hashes hold a
  bounded number of days. Events older than ``ENGAGEMENT_MAX_EVENT_AGE_DAYS`` are
  dead-lettered (``timestamp_too_old``) and create no counter at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import cast

from stream_app.store.keys import Keys
from stream_app.store.records import nps_field
from stream_app.store.state import RedisClient, lua_source

CATEGORIES = ("promoter", "passive", "detractor")
_PRUNE = lua_source("nps_prune.lua")


def days(first: date, last: date) -> list[str]:
    """Every day from ``first`` to ``last``, as ``YYYY-MM-DD``.

    >>> days(date(2024, 2, 28), date(2024, 3, 1))
    ['2024-02-28', '2024-02-29', '2024-03-01']
    """
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


class NpsCounters:
    """The NPS counters of one deployment (prefix and model)."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    async def sources(self) -> list[tuple[str, int]]:
        """The source partitions that have counters."""
        raw = cast(set[bytes], await self.client.smembers(self.keys.nps_sources()))
        out = []
        for src in sorted(s.decode() for s in raw):
            topic, partition = src.rsplit(":", 1)
            out.append((topic, int(partition)))
        return out

    async def window(self, day_names: Sequence[str], tiers: Sequence[str]) -> dict[str, int]:
        """The counters of ``day_names`` for tier ``*`` and each of ``tiers``, summed over
        the source partitions (fields absent: not in the result)."""
        fields = [nps_field(d, t, c) for d in day_names for t in ("*", *tiers) for c in CATEGORIES]
        sources = await self.sources()
        if not sources or not fields:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for topic, partition in sources:
            pipe.hmget(self.keys.nps_counts(topic, partition), fields)
        total: dict[str, int] = {}
        for row in await pipe.execute():
            for name, value in zip(fields, row, strict=True):
                if value is not None:
                    total[name] = total.get(name, 0) + int(value)
        return total

    async def prune(self, topic: str, partition: int, first_day: str) -> int:
        """Delete the counters of ``topic:partition`` for days before ``first_day``; how many."""
        key = self.keys.nps_counts(topic, partition)
        return int(await self.client.eval(_PRUNE, 1, key, first_day))

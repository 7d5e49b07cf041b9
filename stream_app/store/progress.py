"""Durable event-time progress per partition number, with the offsets that justify it.

A worker saves, at most once per decay tick, the progress it has already made durable
(the batches that justify it were written): the input partition's progress and last
offset, the latest watermark of every input partition read from the by-customer
partition, and the last by-customer offset. A restarted worker, or a new owner after a
rebalance, merges it in before it sweeps or sends watermarks, so it goes on from there
instead of waiting for an event. Each field only moves up (``lua/progress_max.lua``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from stream_app.store.keys import Keys
from stream_app.store.state import RedisClient, lua_source


@dataclass(frozen=True, slots=True)
class StoredProgress:
    """One partition's durable progress, with the offsets that justify it: input progress
    (ms) and the last input offset processed; the latest watermark of every input
    partition read from the by-customer partition, and the last by-customer offset."""

    input_ms: float | None = None
    input_offset: int = -1
    upstream: Mapping[int, float] = field(default_factory=dict)
    upstream_offset: int = -1


_IN, _IN_OFFSET, _BC_OFFSET, _FROM = "in", "in_offset", "bc_offset", "from:"


def progress_fields(progress: StoredProgress) -> list[str]:
    """The script's (field, number) pairs for one partition.

    >>> progress_fields(StoredProgress(1000.0, 7, {2: 900.5}, 3))
    ['in', '1000.0', 'in_offset', '7', 'from:2', '900.5', 'bc_offset', '3']
    """
    out: list[str] = []
    if progress.input_ms is not None:
        out += [_IN, repr(progress.input_ms)]
    if progress.input_offset >= 0:
        out += [_IN_OFFSET, str(progress.input_offset)]
    for p, at in sorted(progress.upstream.items()):
        out += [f"{_FROM}{p}", repr(at)]
    if progress.upstream_offset >= 0:
        out += [_BC_OFFSET, str(progress.upstream_offset)]
    return out


def parse_progress(raw: Mapping[bytes, bytes]) -> StoredProgress:
    """A progress hash as read (``HGETALL``).

    >>> parse_progress({b"in": b"1000.0", b"from:2": b"900.5", b"bc_offset": b"3"})
    StoredProgress(input_ms=1000.0, input_offset=-1, upstream={2: 900.5}, upstream_offset=3)
    """
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    upstream = {int(k[len(_FROM) :]): float(v) for k, v in fields.items() if k.startswith(_FROM)}
    return StoredProgress(
        float(fields[_IN]) if _IN in fields else None,
        int(fields.get(_IN_OFFSET, -1)),
        upstream,
        int(fields.get(_BC_OFFSET, -1)),
    )


class ProgressStore:
    """Saves and loads :class:`StoredProgress` per partition number."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        # redis-py's Script: EVALSHA, loaded again by itself after NOSCRIPT
        self._max = client.register_script(lua_source("progress_max.lua"))

    async def save(self, progress: Mapping[int, StoredProgress]) -> None:
        """Move each partition's stored progress up to ``progress`` (never down)."""
        calls = [
            self._max(keys=[self.keys.progress(p)], args=args)
            for p, value in sorted(progress.items())
            if (args := progress_fields(value))
        ]
        await asyncio.gather(*cast(list[Any], calls))

    async def load(self, partitions: Sequence[int]) -> dict[int, StoredProgress]:
        """The stored progress of ``partitions`` (empty progress when none is stored)."""
        raws = await asyncio.gather(
            *(cast(Any, self.client.hgetall(self.keys.progress(p))) for p in partitions)
        )
        return {p: parse_progress(raw) for p, raw in zip(partitions, raws, strict=True)}

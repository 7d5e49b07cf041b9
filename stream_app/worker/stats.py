"""What a batch and a sweep did, for the metrics and the logs."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field


@dataclass
class BatchStats:
    """What one batch did, for logs and metrics."""

    consumed: int = 0
    applied: int = 0
    duplicate: int = 0
    capped: int = 0
    redelivered: int = 0
    #: Redelivered by offset, yet the event id is not among the customer's recent ones:
    #: the source offsets may have been reset (see docs/guarantees.md, broker restart).
    suspect_redelivered: int = 0
    forwarded: int = 0
    control: int = 0  # watermark control records (not events: not in ``consumed``)
    changes: Counter[str] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0
    #: Seconds spent per stage: ``score`` (parse, fold, encode: CPU), ``read`` (the
    #: records' MGET), ``publish`` (until the broker acked), ``write`` (the pipeline).
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    suppressed: int = 0  # events of erased customers, dropped
    aliased: int = 0  # events of merged-away customers, sent on to the survivor
    #: Lifecycle requests and hand-overs by outcome (``erase``, ``merge``, ``merge_in``,
    #: ``merge_refused:<why>``, ...).
    lifecycle: Counter[str] = field(default_factory=Counter)

    def add(self, other: BatchStats) -> None:
        """Add the counts of another part of the same batch."""
        for name in (
            "consumed", "applied", "duplicate", "capped", "redelivered", "suspect_redelivered",
            "forwarded", "control", "conflicts", "suppressed", "aliased",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.changes.update(other.changes)
        self.dead.update(other.dead)
        self.lifecycle.update(other.lifecycle)
        for stage, seconds in other.seconds.items():
            self.seconds[stage] += seconds


@dataclass
class SweepStats:
    """What one partition's sweep did."""

    due: int = 0
    fired: int = 0
    changes: int = 0
    conflicts: int = 0
    skipped: int = 0  # customers whose record cannot be read (left as they are)
    max_lag_ms: float = 0.0
    by_type: Counter[str] = field(default_factory=Counter)


class StageTimer:
    """Adds the time since the previous lap to a stage's total."""

    __slots__ = ("_last", "_totals")

    def __init__(self, totals: defaultdict[str, float]) -> None:
        self._totals = totals
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._totals[stage] += now - self._last
        self._last = now

"""Sizes of a fault run, the constants of the harness, and the result of a scenario."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DAY_MS = 86_400_000
#: The decay timer's interval in the workers: one hour, i.e. never during a run
#: (see ``tests/faults/harness.py``).
SWEEP_OFF_MS = "3600000"
MIB = 1024 * 1024
#: End of the simulated history (2026-11-01T00:00:00Z), fixed so a run is reproducible.
WORKLOAD_END_MS = 1_793_491_200_000


class HarnessError(RuntimeError):
    """A scenario could not run to its end (a worker crashed, a wait timed out...)."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Config:
    """Sizes of one run. The defaults are the small scale of the normal test suite."""

    events: int = 3000
    customers: int = 200
    kills: int = 3
    hostile: int = 2000
    partitions: int = 4
    seed: int = 7
    duplicate_rate: float = 0.05
    disorder_rate: float = 0.1
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="faults-")))
    settle_timeout: float = 120.0
    #: Redis pauses of scenario 6, in seconds (one beyond the worker's 10 s socket timeout
    #: exercises the timeout path too).
    pauses: tuple[float, ...] = (3.0, 3.0)
    #: Waiting for the final state gives up after this long without any Redis write.
    quiet: float = 15.0
    #: Upper bound of the random extra delay before a fault, seconds.
    jitter: float = 0.2

    @classmethod
    def soak(cls, **overrides: Any) -> Config:
        base = cls(
            events=50_000,
            customers=2_000,
            kills=5,
            hostile=100_000,
            settle_timeout=900.0,
            quiet=30.0,
            pauses=(5.0, 5.0, 12.0),
            jitter=2.0,
        )
        for k, v in overrides.items():
            setattr(base, k, v)
        return base


@dataclass
class Result:
    """One row of the summary table, with the details behind it."""

    scenario: str
    events: int = 0
    faults: int = 0
    mismatches: int = 0
    lost: int = 0
    dup_diff: int = 0
    recovery_s: float | None = None
    ok: bool = False
    #: When set, mismatches and losses are measured, not failures (``appendfsync everysec``).
    measured_only: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

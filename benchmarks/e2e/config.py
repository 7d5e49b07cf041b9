"""Where the benchmark lives, and the settings of one run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CEILINGS = REPO / "benchmarks" / "ceilings.py"
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Config:
    events: int
    customers: int
    partitions: int
    zipf: float
    seed: int
    latency_rate: float
    latency_seconds: float
    latency_customers: int
    poll_s: float
    profile: bool
    out: Path
    skip: frozenset[str]
    #: ENGAGEMENT_* settings given to every worker and the faust ceiling (``--set``).
    settings: tuple[tuple[str, str], ...] = ()

"""The issue's targets and the verdict on each from the measured results."""

from __future__ import annotations

import math
from typing import Any

#: The issue's targets, as (key, what, threshold text).
TARGET_TEXT = {
    "ratio_faust": ">= 90 % of the faust do-nothing ceiling",
    "per_worker": ">= 20,000 events/s per worker",
    "scale": "2 workers >= 1.7x one",
    "p99": "p99 <= 100 ms at 2,000 events/s",
    "memory": "<= 200 B per customer",
    "startup": "first event <= 10 s after launch",
}


def get_path(results: dict[str, Any], *path: str) -> Any:
    doc: Any = results
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def events_rate(doc: Any) -> float | None:
    value = get_path(doc, "events_per_s") if isinstance(doc, dict) else None
    return value if isinstance(value, float) and math.isfinite(value) else None


def verdicts(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: the measured value it was judged on, and PASS/FAIL (None: not measured)."""
    worker, faust_c = events_rate(r.get("worker")), events_rate(r.get("ceiling_faust"))
    two = events_rate(r.get("two_workers"))
    p99 = get_path(r, "latency", "to_consumer_ms", "p99")
    mem = get_path(r, "worker", "memory", "bytes_per_customer")
    starts = [
        s
        for name in ("worker", "worker_noexplain", "two_workers", "profile")
        for s in (get_path(r, name, "startup_s") or [])
        if s is not None
    ]
    ratio = worker / faust_c if worker and faust_c else None
    scale = two / worker if two and worker else None
    startup = max(starts) if starts else None
    # The latency target is at 2,000 events/s for 30 s: no verdict at a lower rate; a shorter
    # run (--quick) can show a FAIL (a backlog only grows) but not a PASS.
    achieved = get_path(r, "latency", "rate_achieved") or 0.0
    seconds = get_path(r, "latency", "seconds") or 0.0
    p99_ok = None if p99 is None or achieved < 0.95 * 2000 else p99 <= 100
    if p99_ok and seconds < 29:
        p99_ok = None
    judged = {
        "ratio_faust": (ratio, None if ratio is None else ratio >= 0.9),
        "per_worker": (worker, None if worker is None else worker >= 20_000),
        "scale": (scale, None if scale is None else scale >= 1.7),
        "p99": (p99, p99_ok),
        "memory": (mem, None if mem is None else mem <= 200),
        "startup": (startup, None if startup is None else startup <= 10),
    }
    out = {}
    for k, (value, ok) in judged.items():
        busy = max((others_cores(r.get(ph)) for ph in _PHASES_OF[k]), default=0.0)
        out[k] = {"target": TARGET_TEXT[k], "measured": value, "pass": ok, "others_cores": busy}
    return out


#: The phases each target is measured in (whose machine load matters for it).
_PHASES_OF = {
    "ratio_faust": ("worker", "ceiling_faust"),
    "per_worker": ("worker",),
    "scale": ("worker", "two_workers"),
    "p99": ("latency",),
    "memory": (),
    "startup": ("worker", "worker_noexplain", "two_workers"),
}
#: Cores used by processes this run did not start, above which a figure is flagged.
BUSY = 0.25


def others_cores(doc: Any) -> float:
    value = get_path(doc, "cpu_cores", "others")
    return float(value) if isinstance(value, float) else 0.0

"""The benchmark's targets and verdicts: each target, the figure it is judged on, and
whether it passes (the one place the run's figures are judged; ``report`` shows them).

Pure: :func:`figures` picks the judged figures out of a run's results (the JSON the
benchmark writes), :func:`verdicts` judges them. The report's ``verdicts`` object is::

    {"per_worker": {"measured": 21034.5, "target": ">= 20,000 events/s", "pass": true}, ...}

for ``per_worker``, ``ratio_aiokafka``, ``ratio_quix``, ``p50``, ``p99``, ``memory``,
``scale`` and ``startup``. ``measured`` is None when the figure was not measured (its
phase skipped or failed); ``pass`` is then false, and so is it for a latency figure taken
at a lower rate or over a shorter time than the target names (``--quick``): a ``note``
says why.

>>> v = verdicts({"worker_events_per_s": 21000.0, "aiokafka_events_per_s": 280000.0})
>>> v["per_worker"]
{'measured': 21000.0, 'target': '>= 20,000 events/s per worker', 'pass': True}
>>> v["ratio_aiokafka"]["measured"], v["ratio_aiokafka"]["pass"]
(0.075, True)
>>> v["ratio_quix"]["measured"], v["ratio_quix"]["pass"], v["ratio_quix"]["note"]
(None, False, 'not measured')
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: The latency targets hold at this rate for this long (at least 95 % of it, 29 s).
LATENCY_RATE, LATENCY_SECONDS = 2000.0, 30.0


@dataclass(frozen=True)
class Target:
    text: str
    threshold: float
    holds: Callable[[float, float], bool]  # holds(measured, threshold)


TARGETS: dict[str, Target] = {
    "per_worker": Target(">= 20,000 events/s per worker", 20_000.0, operator.ge),
    "ratio_aiokafka": Target(">= 7 % of the plain aiokafka consumer (events/s)", 0.07, operator.ge),
    "ratio_quix": Target(">= 1.0x the Quix Streams peer (events/s)", 1.0, operator.ge),
    "p50": Target("p50 <= 30 ms at 2,000 events/s for 30 s", 30.0, operator.le),
    "p99": Target("p99 <= 100 ms at 2,000 events/s for 30 s", 100.0, operator.le),
    "memory": Target("<= 200 B of Redis per customer, explanation on", 200.0, operator.le),
    "scale": Target("2 workers >= 1.8x one (events/s)", 1.8, operator.ge),
    "startup": Target("first event <= 5 s after launch", 5.0, operator.le),
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def measured(figs: Mapping[str, float | None]) -> dict[str, float | None]:
    """The value each target is judged on, from the figures (None: not measured).

    >>> measured({"worker_events_per_s": 5000.0, "two_workers_events_per_s": 9000.0})["scale"]
    1.8
    """
    f = {k: _number(v) for k, v in figs.items()}
    worker = f.get("worker_events_per_s")
    return {
        "per_worker": worker,
        "ratio_aiokafka": _ratio(worker, f.get("aiokafka_events_per_s")),
        "ratio_quix": _ratio(worker, f.get("quix_events_per_s")),
        "p50": f.get("latency_p50_ms"),
        "p99": f.get("latency_p99_ms"),
        "memory": f.get("bytes_per_customer"),
        "scale": _ratio(f.get("two_workers_events_per_s"), worker),
        "startup": f.get("startup_s"),
    }


def _latency_note(figs: Mapping[str, float | None]) -> str | None:
    """Why a latency figure is not judged (None: it is)."""
    rate, seconds = _number(figs.get("latency_rate")), _number(figs.get("latency_seconds"))
    if rate is None or rate < 0.95 * LATENCY_RATE:
        shown = "unknown" if rate is None else f"{rate:,.0f}/s"
        return f"not judged: the rate was {shown}, the target is at {LATENCY_RATE:,.0f}/s"
    if seconds is None or seconds < LATENCY_SECONDS - 1:
        shown = "unknown" if seconds is None else f"{seconds:.0f} s"
        return f"not judged: traffic for {shown}, the target is for {LATENCY_SECONDS:.0f} s"
    return None


def verdicts(figs: Mapping[str, float | None]) -> dict[str, dict[str, Any]]:
    """``{target: {"measured", "target", "pass"[, "note"]}}`` for every target."""
    values = measured(figs)
    out: dict[str, dict[str, Any]] = {}
    for key, target in TARGETS.items():
        value = values[key]
        note = "not measured" if value is None else None
        if note is None and key in ("p50", "p99"):
            note = _latency_note(figs)
        passed = note is None and value is not None and target.holds(value, target.threshold)
        out[key] = {"measured": value, "target": target.text, "pass": passed}
        if note is not None:
            out[key]["note"] = note
    return out


def _shown(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}" if value >= 10 else f"{value:.3f}"


def text(judged: Mapping[str, Mapping[str, Any]]) -> str:
    """The verdicts as a table for the terminal.

    >>> print(text(verdicts({"worker_events_per_s": 21000.0, "startup_s": 6.0})))
    target          measured  verdict  what
    per_worker        21,000  PASS     >= 20,000 events/s per worker
    ...
    startup            6.000  FAIL     first event <= 5 s after launch
    """
    lines = [f"{'target':<14}{'measured':>10}  {'verdict':<7}  what"]
    for key, doc in judged.items():
        value = doc["measured"]
        shown = "-" if value is None else _shown(value)
        verdict = "PASS" if doc["pass"] else "FAIL" if "note" not in doc else "-"
        note = f" ({doc['note']})" if "note" in doc else ""
        lines.append(f"{key:<14}{shown:>10}  {verdict:<7}  {doc['target']}{note}")
    return "\n".join(lines)


def get_path(doc: Any, *path: str) -> Any:
    """``doc[path[0]][path[1]]...``; None where a key is missing or a value not a mapping.

    >>> get_path({"a": {"b": 1}}, "a", "b"), get_path({"a": 1}, "a", "b")
    (1, None)
    """
    for key in path:
        if not isinstance(doc, Mapping) or key not in doc:
            return None
        doc = doc[key]
    return doc


def events_rate(doc: Any) -> float | None:
    """A phase's events/s (None: failed, skipped or not finite)."""
    return _number(get_path(doc, "events_per_s"))


#: The phases each target is measured in (whose machine load matters for it).
PHASES_OF: dict[str, tuple[str, ...]] = {
    "per_worker": ("worker",),
    "ratio_aiokafka": ("worker", "ceiling_aiokafka"),
    "ratio_quix": ("worker", "quix"),
    "p50": ("latency",),
    "p99": ("latency",),
    "memory": (),
    "scale": ("worker", "two_workers"),
    "startup": ("worker", "worker_noexplain", "two_workers"),
}
#: Cores used by processes this run did not start, above which a figure is flagged.
BUSY = 0.25


def others_cores(results: Mapping[str, Any], key: str) -> float:
    """The most cores used by processes outside the run in the phases of target ``key``."""
    found = (_number(get_path(results, p, "cpu_cores", "others")) for p in PHASES_OF[key])
    return max((x for x in found if x is not None), default=0.0)


def figures(results: Mapping[str, Any]) -> dict[str, float | None]:
    """The judged figures of a benchmark run's results (phase name -> its document).

    The phases: ``worker`` (events/s, Redis memory, startup), ``ceiling_aiokafka``,
    ``quix``, ``two_workers``, ``latency`` (``to_consumer_ms`` p50/p99, ``rate_achieved``,
    ``seconds``); a phase that failed or was skipped gives None.
    """
    starts = [
        s
        for phase in ("worker", "worker_noexplain", "two_workers", "profile")
        for s in (get_path(results, phase, "startup_s") or [])
        if _number(s) is not None
    ]
    return {
        "worker_events_per_s": get_path(results, "worker", "events_per_s"),
        "aiokafka_events_per_s": get_path(results, "ceiling_aiokafka", "events_per_s"),
        "quix_events_per_s": get_path(results, "quix", "events_per_s"),
        "two_workers_events_per_s": get_path(results, "two_workers", "events_per_s"),
        "latency_p50_ms": get_path(results, "latency", "to_consumer_ms", "p50"),
        "latency_p99_ms": get_path(results, "latency", "to_consumer_ms", "p99"),
        "latency_rate": get_path(results, "latency", "rate_achieved"),
        "latency_seconds": get_path(results, "latency", "seconds"),
        "bytes_per_customer": get_path(results, "worker", "memory", "bytes_per_customer"),
        "startup_s": max(starts) if starts else None,
    }

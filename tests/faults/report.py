"""The summary table of a fault run, and the details behind each row."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from tests.faults.config import Result

#: The name of a test report's user property holding one scenario's result.
PROPERTY = "fault_result"


def as_property(result: Result) -> tuple[str, dict[str, Any]]:
    """``result`` as a report's user property: plain data (xdist sends reports between
    processes), the details as the text the summary prints of them."""
    doc = dataclasses.asdict(result)
    doc["details"] = {k: str(v) for k, v in result.details.items()}
    doc["notes"] = [str(n) for n in result.notes]
    return PROPERTY, doc


def results_of(report: pytest.TestReport) -> list[Result]:
    """The results a test's teardown report carries (none for other reports)."""
    if report.when != "teardown":
        return []
    return [Result(**doc) for name, doc in report.user_properties if name == PROPERTY]


def format_table(results: Sequence[Result]) -> str:
    """The summary table (plain text, one row per scenario)."""
    head = (
        "scenario",
        "events",
        "faults injected",
        "mismatches",
        "lost",
        "dup-diff content",
        "max recovery",
        "result",
    )
    rows = [head]
    for r in results:
        if r.error:
            verdict = "ERROR"
        elif r.measured_only:
            verdict = "measured" if r.ok else "FAIL"
        else:
            verdict = "pass" if r.ok else "FAIL"
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s"
        rows.append(
            (
                r.scenario,
                str(r.events),
                str(r.faults),
                str(r.mismatches),
                str(r.lost),
                str(r.dup_diff),
                rec,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def format_details(results: Sequence[Result]) -> str:
    out = []
    for r in results:
        out.append(f"{r.scenario}:")
        if r.error:
            out.append(f"  ERROR: {r.error}")
        for k, v in r.details.items():
            out.append(f"  {k}: {v}")
        for note in r.notes:
            out.append(f"  - {note}")
    return "\n".join(out)

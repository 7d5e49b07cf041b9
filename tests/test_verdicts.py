"""The benchmark's verdicts object: every target judged on the right figure, at its edges;
the report's table shows the same verdicts."""

from __future__ import annotations

import doctest
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quix_peer
from e2e import verdicts as verdicts_module
from e2e.report import table
from e2e.verdicts import TARGETS, figures, verdicts

KEYS = ["per_worker", "ratio_aiokafka", "ratio_quix", "p50", "p99", "memory", "scale", "startup"]

#: A run's results as the benchmark writes them (the parts the verdicts read, and others).
RESULTS: dict[str, Any] = {
    "ceiling_aiokafka": {"events_per_s": 300_000.0},
    "quix": {"events_per_s": 20_000.0, "cpu_us_per_event": 49.0},
    "worker": {
        "events_per_s": 21_000.0,
        "startup_s": [4.2],
        "memory": {"bytes_per_customer": 199.5},
    },
    "worker_noexplain": {"error": "PhaseError: boom"},
    "two_workers": {"events_per_s": 37_800.0, "startup_s": [4.9, None]},
    "latency": {
        "rate_achieved": 1990.0,
        "seconds": 30.0,
        "to_consumer_ms": {"p50": 30.0, "p90": 60.0, "p99": 100.5},
    },
}


def test_a_run_is_judged_on_the_figures_it_measured() -> None:
    v = verdicts(figures(RESULTS))
    assert list(v) == KEYS
    assert {k: d["pass"] for k, d in v.items()} == {
        "per_worker": True,  # 21,000 >= 20,000
        "ratio_aiokafka": True,  # 0.07 >= 0.07
        "ratio_quix": True,  # 1.05
        "p50": True,  # 30 <= 30
        "p99": False,  # 100.5 > 100
        "memory": True,
        "scale": True,  # 1.8 >= 1.8
        "startup": True,  # the worst launch: 4.9 s
    }
    assert v["ratio_aiokafka"]["measured"] == pytest.approx(0.07)
    assert v["ratio_quix"]["measured"] == pytest.approx(1.05)
    assert v["scale"]["measured"] == pytest.approx(1.8)
    assert v["startup"]["measured"] == 4.9
    assert v["p99"]["measured"] == 100.5 and "note" not in v["p99"]
    for key, doc in v.items():
        assert set(doc) == {"measured", "target", "pass"}
        assert doc["target"] == TARGETS[key].text
    json.dumps(v, allow_nan=False)  # the report's JSON


def test_what_was_not_measured_does_not_pass() -> None:
    v = verdicts(figures({"worker": {"error": "PhaseError: boom"}, "quix": {"events_per_s": 1.0}}))
    for doc in v.values():
        assert doc == {**doc, "measured": None, "pass": False, "note": "not measured"}


@pytest.mark.parametrize(
    ("rate", "seconds", "note"),
    [
        (1800.0, 30.0, "the rate was 1,800/s"),
        (2000.0, 10.0, "traffic for 10 s"),
        (None, 30.0, "unknown"),
    ],
)
def test_latency_below_the_targets_rate_or_time_is_not_judged(
    rate: float | None, seconds: float, note: str
) -> None:
    figs = figures(RESULTS) | {"latency_rate": rate, "latency_seconds": seconds}
    v = verdicts(figs)
    for key in ("p50", "p99"):
        assert v[key]["pass"] is False and note in v[key]["note"]
        assert v[key]["measured"] == RESULTS["latency"]["to_consumer_ms"][key]


def test_a_number_that_is_not_finite_counts_as_not_measured() -> None:
    v = verdicts({"worker_events_per_s": float("nan"), "startup_s": float("inf")})
    assert v["per_worker"]["measured"] is None and v["startup"]["measured"] is None
    assert v["ratio_quix"]["measured"] is None and not v["ratio_quix"]["pass"]


def test_the_edges_of_each_target() -> None:
    base = {"worker_events_per_s": 20_000.0, "latency_rate": 2000.0, "latency_seconds": 30.0}
    just = verdicts(
        base
        | {
            "aiokafka_events_per_s": 20_000.0 / 0.07,
            "quix_events_per_s": 20_000.0,
            "two_workers_events_per_s": 36_000.0,
            "latency_p50_ms": 30.0,
            "latency_p99_ms": 100.0,
            "bytes_per_customer": 200.0,
            "startup_s": 5.0,
        }
    )
    assert all(d["pass"] for d in just.values()), just
    over = verdicts(
        {"worker_events_per_s": 19_999.0, "quix_events_per_s": 20_000.0}
        | {"bytes_per_customer": 200.1, "startup_s": 5.01, "two_workers_events_per_s": 35_998.0}
    )
    assert not any(d["pass"] for d in over.values())


@pytest.mark.parametrize("module", [verdicts_module, quix_peer], ids=lambda m: m.__name__)
def test_the_examples_in_the_modules_hold(module: Any) -> None:
    """(``benchmarks/`` is not collected for doctests; quix_peer's need no Quix import.)"""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_the_report_table_shows_the_verdicts() -> None:
    results = RESULTS | {"latency": RESULTS["latency"] | {"seconds": 10.0}}  # as --quick
    results["quix"] = RESULTS["quix"] | {"cpu_cores": {"quix": 0.98, "others": 0.6}}
    v = verdicts(figures(results))
    lines = table(results, v).splitlines()

    def line(label: str) -> str:
        return next(x for x in lines if x.startswith(label))

    assert line("1 worker: events/s").endswith("PASS")
    assert "1.05x" in line("worker / Quix") and line("worker / Quix").endswith("PASS*")
    assert line("latency p99").endswith("n/a") and line("latency at").endswith("n/a")
    assert "7.0%" in line("worker / ceiling (a)")
    assert "Quix" in line("CPU us/event") and "49.0" in line("CPU us/event")
    assert any(x.startswith("* measured while processes") for x in lines)

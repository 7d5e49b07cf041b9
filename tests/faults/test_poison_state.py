"""Scenario 7 of the fault harness at small scale: poison keys, corrupt records and wrong
types against a real worker, Tansu and redis-server (``tests/faults/poison_state.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.config import Config, Result
from tests.faults.poison_state import scenario_poison_state
from tests.faults.report import format_details


@pytest.mark.integration
def test_poison_keys_corrupt_records_and_wrong_types(
    tmp_path: Path, fault_results: list[Result]
) -> None:
    cfg = Config(events=3000, customers=200, hostile=2000, workdir=tmp_path, quiet=8.0)
    r = scenario_poison_state(cfg)
    fault_results.append(r)
    assert r.error is None, r.error
    assert r.ok, format_details([r])
    assert r.details["worker log: batch retries / tracebacks (stalls)"] == "0 / 0"
    reasons = r.details["dead letters by reason"]
    for reason in ("too_large", "key_too_large", "timestamp_too_old", "corrupt_state",
                   "store_rejected"):  # fmt: skip
        assert reasons.get(reason, 0) > 0, reasons
    assert set(r.details["poisoned by kind"]) == {"rot", "hash", "list", "set", "zset"}
    assert r.faults > 0

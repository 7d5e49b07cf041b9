"""The worker's garbage-collector freeze (stream_app/worker/gc_tuning.py)."""

from __future__ import annotations

import gc

import pytest

from stream_app.settings import Settings
from stream_app.worker import gc_tuning


def test_freeze_moves_every_live_object_out_of_the_collections_reach() -> None:
    assert gc.get_freeze_count() == 0
    try:
        frozen = gc_tuning.freeze()
        assert frozen == gc.get_freeze_count() > 1000
        cycle: list[object] = []
        cycle.append(cycle)  # garbage made after the freeze is still collected
        del cycle
        assert gc.collect() >= 1
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(("raw", "want"), [(None, True), ("false", False), ("true", True)])
def test_the_freeze_is_a_setting(raw: str | None, want: bool) -> None:
    env = {} if raw is None else {"ENGAGEMENT_GC_FREEZE": raw}
    assert Settings.from_env(env).gc_freeze is want

"""The faust App the worker runs: faust's Monitor sensor is optional, quietly."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from stream_app.app import create_app
from stream_app.settings import Settings


@pytest.mark.parametrize("monitor", [False, True])
def test_sensors_follow_the_setting_and_rebalances_log_no_missing_state(
    monitor: bool, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    async def main() -> tuple[bool, bool]:  # inside a loop: the app uses it, asyncio closes it
        app = create_app(Settings(faust_monitor=monitor, data_dir=str(tmp_path)))
        list(app.on_init_dependencies())
        with caplog.at_level(logging.WARNING):
            app.on_rebalance_start()
            app.on_rebalance_return()
            app.on_rebalance_end()
        # faust's consumer thread made its own loop for a worker that never runs: close it
        app.consumer._thread.thread_loop.close()
        return app.monitor in set(app.sensors), app.rebalancing

    has_monitor, rebalancing = asyncio.run(main())
    assert has_monitor is monitor
    assert rebalancing is False
    assert not [r for r in caplog.records if "Missing sensor state" in r.getMessage()]

"""The worker's App has no tables, and its table manager starts without faust's 1 s wait
(against a real Tansu broker: the manager reads the consumer's assignment)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
import pytest

from stream_app.app import create_app
from stream_app.devkit.stack import LocalService
from stream_app.faustx.tables import TableManager
from stream_app.messages import Topics
from stream_app.settings import Settings
from stream_app.worker.agents import register_input

pytestmark = pytest.mark.integration


def run_start(
    tansu: LocalService, tmp_path: Path, *, table: bool
) -> tuple[list[float], bool, bool]:
    """Start the App's table manager (its consumer started, not subscribed) with its
    ``sleep`` recorded: the sleeps asked for, whether the tables were registered and
    whether recovery runs."""

    async def main() -> tuple[list[float], bool, bool]:
        app = create_app(Settings(kafka_brokers=tansu.url, data_dir=str(tmp_path)))
        if table:
            app.Table("counts", default=int)
        manager = app.tables
        asked: list[float] = []
        faust_sleep = manager.sleep

        async def sleep(seconds: float) -> None:  # records; passes to the loop, no wait
            asked.append(seconds)
            await faust_sleep(0)

        manager.sleep = sleep
        await app.consumer.start()
        try:
            await manager.on_start()
            registered = manager._tables_registered.is_set()
            recovering = manager.recovery.state == "running"
        finally:
            await manager.recovery.stop()
            for t in manager.values():
                await t.stop()
            await app.consumer.stop()
            if app._producer is not None:  # (a table's start starts the app's producer)
                await app._producer.stop()
        return asked, registered, recovering

    return asyncio.run(main())


@pytest.mark.parametrize("batch_input", [True, False])
def test_the_worker_app_uses_the_patched_manager_and_has_no_tables(
    tmp_path: Path, batch_input: bool
) -> None:
    async def main() -> tuple[type, int]:
        settings = Settings(data_dir=str(tmp_path), faust_batch_input=batch_input)
        app = create_app(settings)
        topics = Topics("in", "by-customer", "out", "dlq", settings.partitions)

        async def handle(batch: Any) -> None:  # never called: the app is not started
            raise AssertionError(batch)

        register_input(app, settings, topics, handle)  # the worker's input, either path
        app.finalize()
        kind, count = type(app.tables), len(app.tables)
        app.consumer._thread.thread_loop.close()
        return kind, count

    kind, count = asyncio.run(main())
    assert issubclass(kind, TableManager)
    assert issubclass(kind, faust.tables.TableManager)
    assert count == 0


def test_with_no_tables_the_start_registers_and_recovers_without_sleeping(
    tansu: LocalService, tmp_path: Path
) -> None:
    asked, registered, recovering = run_start(tansu, tmp_path, table=False)
    assert asked == []
    assert registered  # what faust's Conductor waits for before it subscribes
    assert recovering  # what resumes the partitions after a rebalance


def test_an_app_with_a_table_keeps_faust_s_start_and_its_wait(
    tansu: LocalService, tmp_path: Path
) -> None:
    asked, registered, recovering = run_start(tansu, tmp_path, table=True)
    assert asked == [1.0]
    assert registered
    assert recovering

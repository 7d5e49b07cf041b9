"""Shared fixtures: real local services for the whole session, and per-test unique names.

``tansu`` and ``redis_server`` are started at most once per session, lazily (a run of unit tests
starts nothing), on free loopback ports under the session's temporary directory, and stopped by
pid when the session ends, whatever the outcome. Tests share them and keep apart by using
:func:`unique_name` for topics, consumer groups and Redis key prefixes: nothing is flushed.

Any test using a service fixture, or living under ``tests/integration``, is marked
``integration``, so ``pytest -m "not integration"`` runs without services.

Under pytest-xdist (``-n 3``, the default) each process has its own broker and Redis; which
tests go to the same process is :mod:`tests.support.scheduling`'s (tests/README.md).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from xdist.workermanage import Producer

from stream_app.devkit.stack import LocalService, start_redis, start_tansu
from tests.support.scheduling import SharedFixtureScheduling, make_scheduler

if TYPE_CHECKING:
    from tests.faults.config import Result

_SERVICE_FIXTURES = {"tansu", "redis_server", "redis_client"}
_INTEGRATION_DIR = Path(__file__).parent / "integration"
#: Results of the fault-injection scenarios reported to this process (see tests/faults).
_FAULT_RESULTS: list[Result] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses_services = _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_services or _INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.user_properties:  # tests/faults is imported only where its tests ran
        from tests.faults.report import results_of

        _FAULT_RESULTS.extend(results_of(report))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault-injection scenarios' table (tests/faults), when some ran."""
    if _FAULT_RESULTS:
        from tests.faults.report import format_details, format_table

        terminalreporter.section("fault injection (small scale)")
        terminalreporter.write_line(format_table(_FAULT_RESULTS))
        terminalreporter.write_line(format_details(_FAULT_RESULTS))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> SharedFixtureScheduling:
    """Under pytest-xdist, tests sharing a package- or module-scoped fixture run in one
    process, slow ones first (:mod:`tests.support.scheduling`)."""
    return make_scheduler(config, log)


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """An in-memory Tansu broker; ``tansu.url`` is the bootstrap ``127.0.0.1:PORT``."""
    service = start_tansu(log_dir=tmp_path_factory.mktemp("tansu"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """A redis-server without persistence; ``redis_server.url`` is ``redis://127.0.0.1:PORT/0``."""
    service = start_redis(data_dir=tmp_path_factory.mktemp("redis"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def redis_client(redis_server: LocalService) -> Iterator[redis.Redis]:
    """A synchronous client of the session's Redis (not flushed: use unique key prefixes)."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name(prefix)``: a name no other test (or call) gets, valid as a Kafka topic,
    consumer group or Redis key prefix, e.g. ``in-test_keyed_input-3f2a9c1b``."""
    test = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:40].strip("_")

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make

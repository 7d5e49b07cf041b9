"""Helpers for integration tests (every test here is marked ``integration``).

The services themselves (``tansu``, ``redis_server``, ``redis_client``) and ``unique_name``
come from ``tests/conftest.py``. Wait on conditions with :func:`wait_until` (a deadline and a
description), never with fixed sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from stream_app.devkit.stack import LocalService, start_redis_cluster
from stream_app.kafka.topics import TopicSpec, ensure_topics

T = TypeVar("T")


def _wait_until(
    condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail the test
    with ``what`` and the last value if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:g}s waiting for {what or condition!r}: {value!r}"
            )
        time.sleep(interval)


@pytest.fixture
def wait_until() -> Callable[..., object]:
    """``wait_until(condition, timeout=30, what="...")`` -> the first truthy value."""
    return _wait_until


@pytest.fixture
def make_topics(
    tansu: LocalService, unique_name: Callable[[str], str]
) -> Callable[..., dict[str, str]]:
    """``make_topics(input=4, output=1)`` creates uniquely named topics on the session broker
    (explicit ``retention.ms``) and returns ``{"input": "input-<test>-<id>", ...}``."""

    def make(**partitions: int) -> dict[str, str]:
        names = {role: unique_name(role) for role in partitions}
        specs = [TopicSpec(names[role], count) for role, count in partitions.items()]
        asyncio.run(ensure_topics(tansu.url, specs))
        return names

    return make


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LocalService]]:
    """Three cluster-enabled redis-server masters sharing the 16384 slots (one cluster for
    the whole run: tests use their own key prefixes); stopped by pid."""
    nodes = start_redis_cluster(3, data_dir=tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()

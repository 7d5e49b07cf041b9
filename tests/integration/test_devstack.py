"""The local dev stack: Tansu and redis-server start, answer, create topics, restart, stop."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream_app.devkit import stack as devstack
from stream_app.devkit.stack import DevStackError, LocalService
from stream_app.faustx import tuning as faust_tuning
from stream_app.kafka.topics import TopicsError, TopicSpec, ensure_topics

pytestmark = pytest.mark.integration


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _describe(bootstrap: str, topics: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        result: dict[str, tuple[int, dict[str, str]]] = {}
        for response in await admin.describe_configs(resources):
            for _code, _msg, _type, name, entries in response.resources:
                result[name] = (counts[name], {e[0]: e[1] for e in entries})
        return result
    finally:
        await admin.close()


def test_free_port_is_bindable_and_taken_port_is_refused() -> None:
    port = devstack.free_port()
    assert 1024 <= port <= 65535
    assert devstack.free_port(port) == port


def test_resolve_tansu_bin_is_executable() -> None:
    path = devstack.resolve_tansu_bin()
    assert os.path.isfile(path) and os.access(path, os.X_OK)


def test_tansu_round_trips_a_message(tansu: LocalService, make_topics: Any) -> None:
    assert tansu.alive and tansu.url == f"127.0.0.1:{tansu.port}"
    topic = make_topics(t=1)["t"]

    async def round_trip() -> bytes | None:
        producer = AIOKafkaProducer(bootstrap_servers=tansu.url)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=tansu.url, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), timeout=30)
            value: bytes | None = message.value
            return value
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == b"hello"


def test_ensure_topics_creates_requested_partitions_and_configs(
    tansu: LocalService, unique_name: Callable[[str], str]
) -> None:
    # Not 4 partitions: Tansu auto-creates topics named in a Metadata request with 4.
    specs = [
        TopicSpec(unique_name("a"), 3),
        TopicSpec(unique_name("b"), 6, retention_ms=3_600_000),
        TopicSpec(unique_name("c"), 1, cleanup_policy="compact"),
    ]
    asyncio.run(ensure_topics(tansu.url, specs))
    asyncio.run(ensure_topics(tansu.url, specs))  # existing: fine

    described = asyncio.run(_describe(tansu.url, [s.name for s in specs]))
    for spec in specs:
        partitions, configs = described[spec.name]
        assert partitions == spec.partitions
        assert configs["retention.ms"] == str(spec.retention_ms)
        assert configs["cleanup.policy"] == spec.cleanup_policy


def test_ensure_topics_rejects_other_partition_count(
    tansu: LocalService, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("p")
    asyncio.run(ensure_topics(tansu.url, [TopicSpec(name, 2)]))
    with pytest.raises(TopicsError, match="partition"):
        asyncio.run(ensure_topics(tansu.url, [TopicSpec(name, 5)]))


def test_redis_answers(redis_server: LocalService, redis_client: redis.Redis) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_client.ping()
    assert redis_client.config_get("save") == {"save": ""}
    assert redis_client.config_get("bind")["bind"] == "127.0.0.1"


def test_taken_port_is_refused(tansu: LocalService, tmp_path: Path) -> None:
    with pytest.raises(DevStackError, match="in use"):
        devstack.start_redis(tansu.port, data_dir=tmp_path)
    with pytest.raises(DevStackError, match="in use"):
        devstack.start_tansu(tansu.port, log_dir=tmp_path)


def test_early_exit_reports_the_log(tmp_path: Path) -> None:
    with pytest.raises(DevStackError, match="exited early") as info:
        devstack.start_redis(data_dir=tmp_path, appendfsync="sometimes")
    assert "appendfsync" in str(info.value)  # redis-server's complaint, from the log tail


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_restart_redis_keeps_port_dir_and_aof_data(tmp_path: Path, kill: bool) -> None:
    first = devstack.start_redis(data_dir=tmp_path, appendonly=True, appendfsync="always")
    second = None
    try:
        with redis.Redis.from_url(first.url) as client:
            client.set("devstack:k", "v")
        second = devstack.restart_redis(first, kill=kill)
        assert not first.alive and _pid_gone(first.pid)
        assert second.alive and second.pid != first.pid
        assert (second.port, second.url, second.log_path) == (first.port, first.url, first.log_path)
        with redis.Redis.from_url(second.url) as client:
            assert client.get("devstack:k") == b"v"  # appendfsync always: survives SIGKILL too
    finally:
        (second or first).stop()


def test_stop_and_kill_leave_no_process(tmp_path: Path) -> None:
    services = [
        devstack.start_tansu(log_dir=tmp_path),
        devstack.start_redis(data_dir=tmp_path / "r1"),
        devstack.start_redis(data_dir=tmp_path / "r2"),
    ]
    services[0].stop()
    services[1].stop(timeout=5)
    services[2].kill()
    for service in services:
        assert not service.alive
        assert _pid_gone(service.pid)
        assert devstack.free_port(service.port) == service.port  # port released
    assert services[0].process.returncode == 0  # Tansu exits cleanly on SIGTERM
    services[0].stop()  # stopping twice is harmless


def test_start_is_ready_without_fixed_sleeps(tmp_path: Path) -> None:
    started = time.monotonic()
    service = devstack.start_tansu(log_dir=tmp_path)
    try:
        assert time.monotonic() - started < 10
        assert "listening on" in service.log_tail()
    finally:
        service.stop()


def test_faust_tuning_sets_the_consumer_fetch_wait(tansu: LocalService, tmp_path: Path) -> None:
    import faust

    async def build() -> tuple[faust.App, int]:
        # Inside a running loop: a faust App built outside one creates (and leaks) its own.
        app = faust.App(
            "devstack-faust-tuning",
            broker=f"kafka://{tansu.url}",
            datadir=str(tmp_path),
            web_enabled=False,
            **faust_tuning.fast_join_settings(),
        )
        faust_consumer: Any = app.consumer
        thread = faust_consumer._thread  # a ServiceThread: owns a second, not-yet-used loop
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return app, int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()
            thread.thread_loop.close()

    previous = faust_tuning.installed_value()
    faust_tuning.install(77)
    try:
        app, fetch_max_wait_ms = asyncio.run(build())
        assert fetch_max_wait_ms == 77
        assert app.conf.broker_session_timeout == 6.0
        assert app.conf.topic_disable_leader is True
        faust_tuning.uninstall()
        assert asyncio.run(build())[1] == 1500  # faust's own value again
    finally:
        if previous is None:
            faust_tuning.uninstall()
        else:
            faust_tuning.install(previous)

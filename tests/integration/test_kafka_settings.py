"""The worker's Kafka settings: topics created with ``min.insync.replicas`` once they have
three replicas (against Tansu, which keeps whatever configs a topic is created with), and
a producer that is idempotent when asked, with a one-minute request timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream_app.app import PRODUCER_REQUEST_TIMEOUT_S, create_app
from stream_app.devkit.stack import LocalService
from stream_app.kafka.topics import prepare
from stream_app.settings import Settings
from tests.integration.workers import unique

pytestmark = pytest.mark.integration


async def _configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, Any]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        out: dict[str, dict[str, Any]] = {}
        for response in await admin.describe_configs(resources):
            for _code, _msg, _type, name, entries in response.resources:
                out[name] = {e[0]: e[1] for e in entries}
        return out
    finally:
        await admin.close()


@pytest.mark.parametrize(("replicas", "min_insync"), [(1, None), (3, "2")])
def test_created_topics_require_a_majority_of_in_sync_replicas(
    tansu: LocalService, replicas: int, min_insync: str | None
) -> None:
    tag = unique("isr")
    settings = Settings(
        kafka_brokers=tansu.url,
        input_topic=f"{tag}-in",
        output_topic=f"{tag}-out",
        dlq_topic=f"{tag}-dlq",
        topic_replication_factor=replicas,
        partitions=2,
    )
    asyncio.run(prepare(settings, timeout_s=30.0))
    topics = [settings.input_topic, settings.by_customer_topic, settings.output_topic,
              settings.dlq_topic]  # fmt: skip
    found = asyncio.run(_configs(tansu.url, topics))
    for name in topics:
        assert found[name].get("min.insync.replicas") == min_insync, (name, found[name])


def test_the_worker_producer_is_idempotent_when_asked(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        settings = Settings(data_dir=str(tmp_path), max_message_bytes=500_000)
        plain = create_app(settings, idempotent=False)
        plain_cfg = {**plain.producer._settings_default(), **plain.producer._settings_extra()}
        idem = create_app(settings, idempotent=True)
        idem_cfg = {**idem.producer._settings_default(), **idem.producer._settings_extra()}
        for app in (plain, idem):  # (their consumer threads made loops that never ran)
            app.consumer._thread.thread_loop.close()
        return plain_cfg, idem_cfg

    plain, idem = asyncio.run(main())
    assert "enable_idempotence" not in plain
    assert idem["enable_idempotence"] is True and idem["acks"] == "all"
    for cfg in (plain, idem):
        assert cfg["request_timeout_ms"] == int(PRODUCER_REQUEST_TIMEOUT_S * 1000) == 60_000
        assert cfg["max_request_size"] == 500_000

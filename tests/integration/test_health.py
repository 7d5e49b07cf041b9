"""Health that tells the truth, against a real worker, Tansu and its own redis-server.

* Redis refusing writes (out of memory under ``noeviction``): the batch is retried with the
  cause counted; ``/readyz`` fails at once, ``/healthz`` once ``ENGAGEMENT_STALL_SECONDS``
  pass without progress; both recover by themselves when memory is back, and nothing is
  lost.
* The settings are logged once at start-up with every secret masked (an API token, the
  Redis password in the URL's query).
* API errors are JSON without internals: a record that does not decode, a state key that
  holds a hash.
* A worker without partitions (more workers than partitions) is ready and alive.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_app.devkit.stack import LocalService, free_port, start_redis
from stream_app.store.keys import Keys
from tests.integration.api.client import OPENAPI, Reply, Spec, http_get
from tests.integration.workers import (
    Worker,
    event,
    launch,
    now_ms,
    start_worker,
    stop_all,
    unique,
)

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-redis-pw"
API_TOKEN = "api-token-1"
OPS_TOKEN = "ops-token-1"
STALL_S = 2.0
OLD_FIELD = "2020-01-01|*|promoter"
RECENT_DAY = (datetime.now(tz=UTC).date() - timedelta(days=3)).isoformat()
RECENT_FIELD = f"{RECENT_DAY}|*|promoter"


@dataclasses.dataclass
class Live:
    worker: Worker
    port: int
    redis: redis.Redis

    def get(self, path: str, token: str | None = OPS_TOKEN) -> Reply:
        return http_get(self.port, path, token=token)


@pytest.fixture(scope="module")
def live(tansu: LocalService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("health")
    svc = start_redis(data_dir=workdir / "redis")
    admin = redis.Redis.from_url(svc.url)
    admin.config_set("requirepass", PASSWORD)
    admin = redis.Redis.from_url(f"{svc.url}?password={PASSWORD}")
    guarded = dataclasses.replace(svc, url=f"{svc.url}?password={PASSWORD}")
    port = free_port()
    prefix, topic = unique("hk"), unique("health-in")
    keys = Keys(prefix, "default")
    for p in range(4):  # NPS counters of a day long past the retention, and of a recent one
        admin.hset(keys.nps_counts(topic, p), mapping={OLD_FIELD: 5, RECENT_FIELD: 1, "_wm": 9})
    admin.sadd(keys.nps_sources(), *(f"{topic}:{p}" for p in range(4)))
    worker = start_worker(
        tansu,
        guarded,
        workdir,
        name="health",
        ENGAGEMENT_WEB_ENABLED="true",
        ENGAGEMENT_WEB_PORT=str(port),
        ENGAGEMENT_API_TOKENS=API_TOKEN,
        ENGAGEMENT_OPS_TOKENS=OPS_TOKEN,
        ENGAGEMENT_STALL_SECONDS=str(STALL_S),
        ENGAGEMENT_RETRY_MAX_BACKOFF_S="0.2",
        ENGAGEMENT_KEY_PREFIX=prefix,
        ENGAGEMENT_INPUT_TOPIC=topic,
    )
    try:
        worker.wait_ready()
        yield Live(worker, port, admin)
    finally:
        problems = stop_all([worker])
        admin.close()
        svc.stop()
        assert not problems, problems


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec(OPENAPI)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_worker_waiting_on_redis_is_unready_then_stalled_then_recovers(
    live: Live, spec: Spec
) -> None:
    w = live.worker

    def status(path: str) -> tuple[int, dict[str, Any]]:
        reply = live.get(path)
        return reply.status, spec.check(path, reply)

    assert status("/readyz")[0] == 200 and status("/healthz")[0] == 200
    live.redis.config_set("maxmemory", 1)  # noeviction (the default): writes refused, OOM
    try:
        cid = unique("oom")
        sent = w.produce_events([event(unique("e"), cid, "webinar_attended", now_ms() - 1000)])
        _, ready = w.wait(
            lambda: (r := status("/readyz"))[0] == 503 and r, timeout=30, what="/readyz 503"
        )
        assert ready["checks"]["retrying"]["ok"] is False, ready
        assert ready["checks"]["retrying"]["cause"] == "oom"
        assert ready["checks"]["redis"]["ok"] is True  # Redis answers, it only refuses writes
        _, alive = w.wait(
            lambda: (r := status("/healthz"))[0] == 503 and r, timeout=30, what="/healthz 503"
        )
        assert alive["status"] == "stalled" and alive["seconds_since_progress"] >= STALL_S
        assert alive["retrying"]["cause"] == "oom" and alive["lag"] >= 1
        metrics = live.get("/metrics").body.decode()
        assert _metric(metrics, 'engagement_retries_total{cause="oom"}') >= 1
        assert _metric(metrics, "engagement_oldest_unprocessed_age_seconds") > 0
        assert "to retry (oom)" in w.log_tail(20_000)
        assert w.state(cid) is None
    finally:
        live.redis.config_set("maxmemory", 0)
    w.wait_processed({cid: sent[0]}, timeout=30)  # by itself, nothing lost
    w.wait(lambda: status("/healthz")[0] == 200, timeout=15, what="/healthz 200 again")
    w.wait(lambda: status("/readyz")[0] == 200, timeout=15, what="/readyz 200 again")
    assert _metric(live.get("/metrics").body.decode(), "engagement_oldest_unprocessed_age") == 0


def test_settings_are_logged_once_with_secrets_masked(live: Live) -> None:
    text = live.worker.log_path.read_text("utf-8", "replace")
    lines = [line for line in text.splitlines() if "settings: {" in line]
    assert len(lines) == 1, lines
    assert PASSWORD not in text and API_TOKEN not in text and OPS_TOKEN not in text
    assert "password=***" in lines[0] and '"api_tokens":"***"' in lines[0]
    # Tansu refuses aiokafka's InitProducerId: with "auto" the worker says so and goes on
    assert "refuses the idempotent producer" in text


def test_nps_counters_past_the_retention_go_and_nps_reads_only_its_window(
    live: Live, spec: Spec
) -> None:
    keys, topic = live.worker.keys, live.worker.settings.input_topic

    def fields() -> set[bytes]:
        return {f for p in range(4) for f in live.redis.hkeys(keys.nps_counts(topic, p))}

    live.worker.wait(lambda: OLD_FIELD.encode() not in fields(), timeout=30, what="pruned")
    assert fields() == {RECENT_FIELD.encode(), b"_wm"}  # the watermark stays

    def calls(name: str) -> int:
        stats = live.redis.info("commandstats")
        return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))

    before = (calls("hgetall"), calls("hmget"))
    reply = live.get(f"/v1/nps?from={RECENT_DAY}&to={RECENT_DAY}", token=API_TOKEN)
    body = spec.check("/v1/nps", reply)
    assert body["overall"]["promoters"] == 4  # one per source partition
    assert (calls("hgetall"), calls("hmget")) == (before[0], before[1] + 4)


def test_api_errors_are_json_without_internals(live: Live, spec: Spec) -> None:
    keys = live.worker.keys
    live.redis.set(keys.state("broken"), b"7.abc i0=1 5 \x00\x01\x02\x03\x04")
    live.redis.hset(keys.state("hashed"), "x", "1")
    for cid in ("broken", "hashed"):
        for path in (f"/v1/customers/{cid}", f"/v1/customers/{cid}/explain"):
            reply = live.get(path, token=API_TOKEN)
            body = spec.check("/v1/customers/{customer_id}" + path[len(f"/v1/customers/{cid}"):],
                              reply)  # fmt: skip
            assert reply.status == 409 and body["error"]["code"] == "state_unreadable", body
            text = reply.body.decode()
            assert "Invalid" not in text and "Traceback" not in text and "JSON" not in text


def test_a_worker_without_partitions_is_ready_and_alive(
    tansu: LocalService, redis_server: LocalService, tmp_path: Path, spec: Spec
) -> None:
    ports = [free_port(), free_port()]
    web = {"ENGAGEMENT_WEB_ENABLED": "true", "ENGAGEMENT_OPS_TOKENS": OPS_TOKEN}
    first = start_worker(
        tansu, redis_server, tmp_path, name="one", partitions=1,
        ENGAGEMENT_WEB_PORT=str(ports[0]), **web,
    )  # fmt: skip
    workers = [first]
    try:
        second = _launch_on(first, "two", ports[1])  # the same group, its own web port
        workers.append(second)  # (both start together)

        def assigned(port: int) -> int | None:
            try:
                reply = http_get(port, "/readyz", token=OPS_TOKEN)
            except OSError:  # not serving yet
                return None
            if reply.status != 200:
                return None
            return int(spec.check("/readyz", reply)["checks"]["partitions"]["assigned"])

        # the group settles with both topics' one partition on one worker, none on the other
        counts = second.wait(
            lambda: (
                (c := [assigned(p) for p in ports]) and None not in c and sorted(c) == [0, 2] and c
            ),
            timeout=60,
            what="one worker with both partitions, one with none, both ready",
        )
        idle = ports[counts.index(0)]
        reply = http_get(idle, "/healthz")
        assert reply.status == 200 and spec.check("/healthz", reply)["status"] == "ok"
    finally:
        problems = stop_all(workers)
        assert not problems, problems


def _launch_on(w: Worker, name: str, port: int) -> Worker:
    env = {**w.env, "ENGAGEMENT_WEB_PORT": str(port)}
    kwargs = w.redis.connection_pool.connection_kwargs
    url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
    return launch(name, env, w.settings, w.log_path.with_name(f"worker-{name}.log"), url)

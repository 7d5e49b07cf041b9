"""What the worker refuses at start-up, with a clear error and exit status 2 (real Tansu and
redis-server; each refusal comes before the worker joins its group, so these are quick)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from stream_app.devkit.stack import LocalService, start_redis
from stream_app.settings import Settings
from stream_app.store.guard import UnsafeRedis
from stream_app.worker.preflight import check_redis
from tests.integration.workers import REPO, worker_env

pytestmark = pytest.mark.integration


def refused(env: dict[str, str], timeout: float = 60.0) -> str:
    """Run ``engagement-scorer worker`` with ``env``; its stderr, once it exited with 2."""
    done = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "worker"],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    return done.stderr.decode()


@pytest.fixture
def evicting(tmp_path: Path) -> LocalService:
    svc = start_redis(data_dir=tmp_path / "lru")
    client = redis.Redis.from_url(svc.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()
    return svc


def test_an_open_api_beyond_loopback_needs_tokens(
    tansu: LocalService, redis_server: LocalService, tmp_path: Path
) -> None:
    env = worker_env(tansu, redis_server, tmp_path, name="open", ENGAGEMENT_WEB_ENABLED="true",
                     ENGAGEMENT_WEB_BIND="0.0.0.0")  # fmt: skip
    err = refused(env)
    assert "ENGAGEMENT_WEB_BIND=0.0.0.0" in err
    assert "ENGAGEMENT_API_TOKENS and ENGAGEMENT_OPS_TOKENS are empty" in err
    err = refused({**env, "ENGAGEMENT_API_TOKENS": "a", "ENGAGEMENT_OPS_TOKENS": "b",
                   "ENGAGEMENT_KAFKA_IDEMPOTENCE": "on"})  # fmt: skip
    assert "WEB_BIND" not in err  # tokens given: past that check, and refused for idempotence
    assert "refuses the idempotent producer" in err  # (Tansu 0.6 does)


def test_an_evicting_redis_is_refused_unless_told_otherwise(
    tansu: LocalService, evicting: LocalService, tmp_path: Path
) -> None:
    env = worker_env(tansu, evicting, tmp_path, name="lru", ENGAGEMENT_WEB_ENABLED="true",
                     ENGAGEMENT_WEB_BIND="0.0.0.0", ENGAGEMENT_API_AUTH="none")  # fmt: skip
    err = refused(env)  # (API_AUTH=none: an open bind is accepted, the next check refuses)
    assert "maxmemory-policy must be noeviction, not redis: allkeys-lru" in err
    try:
        settings = Settings.from_env(env)
        with pytest.raises(UnsafeRedis):
            asyncio.run(check_redis(settings))
        lax = Settings.from_env({**env, "ENGAGEMENT_REDIS_REQUIRE_NOEVICTION": "false"})
        asyncio.run(check_redis(lax))  # the override: no check
    finally:
        evicting.stop()


def test_a_noeviction_redis_passes(redis_server: LocalService) -> None:
    asyncio.run(check_redis(Settings(redis_url=redis_server.url)))

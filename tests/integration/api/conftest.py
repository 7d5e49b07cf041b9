"""The workers the API tests share (started once for the package, stopped together) and the
OpenAPI document their answers are checked against."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream_app.devkit.stack import LocalService, free_port, start_redis
from tests.integration.api.client import (
    API_TOKENS,
    EXPLAIN_EVENTS,
    OPENAPI,
    OPS_TOKEN,
    Served,
    Spec,
    up,
    web_env,
)
from tests.integration.workers import start_worker, stop_all


@pytest.fixture(scope="package")
def spec() -> Spec:
    return Spec(OPENAPI)


@pytest.fixture(scope="package")
def served(
    tansu: LocalService, redis_server: LocalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    workdir = tmp_path_factory.mktemp("api")
    own_redis = start_redis(data_dir=workdir / "ready-redis")
    holder: dict[str, Served] = {}
    try:
        ports = {name: free_port() for name in ("api", "secured", "ready")}
        extra = {
            "api": web_env(ports["api"], ENGAGEMENT_EXPLAIN_EVENTS=str(EXPLAIN_EVENTS)),
            "secured": web_env(
                ports["secured"],
                ENGAGEMENT_API_TOKENS=",".join(API_TOKENS),
                ENGAGEMENT_OPS_TOKENS=OPS_TOKEN,
            ),
            "ready": web_env(ports["ready"]),
        }
        for name in ("api", "secured", "ready"):
            store = own_redis if name == "ready" else redis_server
            w = start_worker(tansu, store, workdir / name, name=name, **extra[name])
            holder[name] = Served(w, ports[name], own_redis if name == "ready" else None)
        for s in holder.values():
            s.worker.wait_ready()
            s.worker.wait(lambda s=s: up(s.port), timeout=30, what="/healthz")
        yield holder
    finally:
        stop_all([s.worker for s in holder.values()])
        ready = holder.get("ready")
        (ready.redis if ready and ready.redis else own_redis).stop()

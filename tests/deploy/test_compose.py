"""``docker-compose.yml``: valid, and its internal references hold."""

from __future__ import annotations

import copy
import json
import re
import shlex
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from stream_app.cli.main import build_parser
from stream_app.settings import Settings, SettingsError
from tests.deploy.specs import DATA, REPO, SETTING_NAMES, load_yaml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(REPO / "docker-compose.yml")
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as strings (map or ``KEY=VALUE`` list form)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _uses_scorer_image(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("engagement-scorer")


# --------------------------------------------------------------------------- compose file


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads((DATA / "compose-spec.json").read_text("utf-8"))
    assert schema["$schema"].startswith("https://json-schema.org/draft-07/")
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["depends_on"] = 5
    broken["services"]["worker"]["stop_grace_period"] = {"s": 30}
    assert len(list(validator.iter_errors(broken))) >= 2  # the schema does bite


def test_the_compose_spec_copy_matches_the_shared_one() -> None:
    shared = REPO.parent / "shared" / "data" / "compose-spec.json"
    if not shared.exists():
        pytest.skip("no ../shared/data/compose-spec.json beside this clone")
    assert (DATA / "compose-spec.json").read_bytes() == shared.read_bytes()


def test_depends_on_names_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on") or []
        targets = list(deps) if isinstance(deps, dict) else deps
        assert targets == [t for t in targets if t in services and t != name], name
        if isinstance(deps, dict):
            for target, cond in deps.items():
                if cond.get("condition") == "service_healthy":
                    assert "healthcheck" in services[target], f"{name} waits on {target}"


def test_named_volumes_are_declared_and_bind_mounts_exist(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol["source"]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: bind mount {source} is missing"
            else:
                used.add(source)
    assert used == declared


def test_every_engagement_variable_is_a_setting() -> None:
    """In the compose file, the Dockerfile, the AsyncAPI document and the deployment guide
    (comments included), every ``ENGAGEMENT_*`` name is one the app reads."""
    files = ["docker-compose.yml", "Dockerfile", "docs/asyncapi.yaml", "docs/deployment.md"]
    for rel in files:
        names = set(re.findall(r"ENGAGEMENT_[A-Z0-9_]+", (REPO / rel).read_text("utf-8")))
        assert names, rel
        assert names <= SETTING_NAMES, f"{rel}: unknown {sorted(names - SETTING_NAMES)}"


def test_scorer_services_have_valid_settings_and_commands(
    services: dict[str, dict[str, Any]],
) -> None:
    scorer = {n: s for n, s in services.items() if _uses_scorer_image(s)}
    assert set(scorer) == {"worker", "simulator"}
    parser = build_parser()
    for name, svc in scorer.items():
        env = _env(svc)
        assert set(env) <= SETTING_NAMES, name
        Settings.from_env(env)  # values the app accepts
        args = parser.parse_args(_command(svc))
        assert args.command == {"worker": "worker", "simulator": "simulate"}[name]
    assert parser.parse_args(_command(services["simulator"])).rate == 20


def test_worker_reaches_kafka_and_redis_by_service_name(
    services: dict[str, dict[str, Any]],
) -> None:
    settings = Settings.from_env(_env(services["worker"]))
    kafka_env = _env(services["kafka"])
    advertised = {urlsplit(u).netloc for u in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for broker in settings.broker_list:
        assert broker.split(":")[0] in services
        assert broker in advertised, f"{broker} is not an advertised listener"
    redis_url = urlsplit(settings.redis_url)
    assert redis_url.scheme == "redis" and redis_url.hostname in services
    assert redis_url.port == 6379 and "--port" not in _command(services[redis_url.hostname])


def test_worker_scales_without_fixed_host_ports(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "ports" not in worker, "a published host port allows one replica only"
    assert "container_name" not in worker and "hostname" not in worker
    assert worker["build"] == "." and (REPO / "Dockerfile").is_file()
    web_port = Settings.from_env(_env(worker)).web_port
    assert [str(p) for p in worker.get("expose", [])] == [str(web_port)]
    assert worker.get("stop_grace_period"), "give faust time to commit on SIGTERM"


def test_published_ports_are_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all hosts"


def test_kafka_is_a_single_kraft_node_with_replication_factor_one(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka:")
    env = _env(kafka)
    assert not [k for k in env if "ZOOKEEPER" in k]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert voters == [f"{node}@kafka:9093"]
    listeners = {u.split("://")[0]: u for u in env["KAFKA_LISTENERS"].split(",")}
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert set(listeners) <= set(protocols)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    factors = {k: v for k, v in env.items() if k.endswith(("REPLICATION_FACTOR", "MIN_ISR"))}
    assert {"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"} <= set(
        factors
    )
    assert set(factors.values()) == {"1"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # the worker creates its topics
    assert Settings.from_env(_env(services["worker"])).topic_replication_factor == 1


def test_redis_keeps_an_append_only_file(services: dict[str, dict[str, Any]]) -> None:
    cmd = _command(services["redis"])
    assert cmd[0] == "redis-server"
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in services["redis"]["volumes"])


def test_optional_services_sit_behind_profiles(services: dict[str, dict[str, Any]]) -> None:
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert default == {"kafka", "redis", "worker"}
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["prometheus"]["profiles"] == ["metrics"]
    assert services["grafana"]["profiles"] == ["metrics"]


def test_prometheus_scrapes_every_worker_replica(services: dict[str, dict[str, Any]]) -> None:
    mounts = [v for v in services["prometheus"]["volumes"] if v.startswith("./")]
    source, target = mounts[0].split(":")[:2]
    assert target == "/etc/prometheus/prometheus.yml"
    assert f"--config.file={target}" in _command(services["prometheus"])
    config = load_yaml(REPO / source)
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    web_port = Settings.from_env(_env(services["worker"])).web_port
    assert sd["names"] == ["worker"] and sd["port"] == web_port
    # the worker serves /metrics (the file's comments must not say otherwise)
    assert '@app.page("/metrics")' in (REPO / "stream_app" / "http" / "views.py").read_text()
    for path in (REPO / source, REPO / "docker-compose.yml"):
        text = path.read_text("utf-8")
        assert "not serve /metrics" not in text and "issue " not in text, path
    # /metrics takes the ops token: Prometheus reads it from the compose secret
    auth = job["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"] == "/run/secrets/ops_token"
    assert services["prometheus"]["secrets"] == ["ops_token"]


def test_the_stack_ships_tokens_from_the_environment_and_a_lossless_redis(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """The image serves the API beyond loopback, so the stack must give tokens (the worker
    refuses to start otherwise), from the environment, never written in the file."""
    env = _env(services["worker"])
    for name in ("ENGAGEMENT_API_TOKENS", "ENGAGEMENT_OPS_TOKENS"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env[name]), env[name]
    assert compose["secrets"]["ops_token"] == {"environment": "ENGAGEMENT_OPS_TOKENS"}
    cmd = _command(services["redis"])
    assert cmd[cmd.index("--appendfsync") + 1] == "always"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    settings = Settings.from_env({**env, "ENGAGEMENT_WEB_BIND": "0.0.0.0"})
    settings.check_exposure()  # tokens given: accepted beyond loopback
    with pytest.raises(SettingsError, match="ENGAGEMENT_API_TOKENS and ENGAGEMENT_OPS_TOKENS"):
        Settings.from_env(
            {k: v for k, v in env.items() if "TOKENS" not in k} | {"ENGAGEMENT_WEB_BIND": "0.0.0.0"}
        ).check_exposure()

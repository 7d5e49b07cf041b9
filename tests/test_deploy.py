"""Deployment artefacts, checked without Docker or a broker (pure, fast).

* ``docker-compose.yml`` validates against the Compose specification's JSON Schema
  (``tests/data/compose-spec.json``, a copy of ``shared/data/compose-spec.json``) and its
  internal references hold: ``depends_on`` targets, named volumes, the worker's broker and
  Redis addresses, ``ENGAGEMENT_*`` names (real :class:`stream_app.settings.Settings`
  fields), CLI commands (parsed by the real argument parser), no fixed host port on the
  scalable worker, KRaft with replication factors 1, Redis with AOF.
* ``Dockerfile``: slim Python base, non-root user, the console script as entrypoint,
  ``worker`` by default, everything it copies kept by ``.dockerignore``.
* ``docs/asyncapi.yaml`` validates against the AsyncAPI 3.0.0 JSON Schema
  (``tests/data/asyncapi-3.0.0.schema.json``: ``schemas/3.0.0-without-$id.json`` of the
  npm package ``@asyncapi/specs`` 6.11.1, Apache-2.0), names the topics the settings
  default to, and its payload schemas (``docs/schemas/*.json``, referenced) accept what the
  app produces and reject what it dead-letters, exactly where a JSON Schema can tell.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7, DRAFT202012

from scoring import (
    InvalidEvent,
    advance,
    apply,
    load_default_model,
    parse_event,
)
from stream_app import jsonutil, simulator
from stream_app.cli import build_parser
from stream_app.contracts import DLQ_EXTRA_REASONS, cloudevent, dead_letter
from stream_app.settings import PREFIX, Settings

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
DOCS = REPO / "docs"
SETTING_NAMES = frozenset(PREFIX + f.name.upper() for f in fields(Settings))
DEFAULTS = Settings()
NOW_MS = 1_750_000_000_000
DAY_MS = 86_400_000


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = _yaml(REPO / "docker-compose.yml")
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


def test_prometheus_scrapes_every_worker_replica(services: dict[str, dict[str, Any]]) -> None:
    mounts = [v for v in services["prometheus"]["volumes"] if v.startswith("./")]
    source, target = mounts[0].split(":")[:2]
    assert target == "/etc/prometheus/prometheus.yml"
    assert f"--config.file={target}" in _command(services["prometheus"])
    config = _yaml(REPO / source)
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    web_port = Settings.from_env(_env(services["worker"])).web_port
    assert sd["names"] == ["worker"] and sd["port"] == web_port
    assert "not serve /metrics yet" in (REPO / source).read_text("utf-8")


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text("utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        lines.append((word.upper(), rest.strip()))
    return lines


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1] :]


def test_dockerfile_runs_the_console_script_as_a_non_root_user() -> None:
    final = _final_stage()
    assert final[0][1].split()[0] == "python:3.11-slim"
    users = [i for i, (word, _) in enumerate(final) if word == "USER"]
    runs = [i for i, (word, _) in enumerate(final) if word == "RUN"]
    assert users and users[-1] > max(runs), "the last USER must follow every RUN"
    user = final[users[-1]][1].split(":")[0]
    assert user not in {"root", "0"}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    (script,) = pyproject["project"]["scripts"]
    entry = dict(final)
    assert json.loads(entry["ENTRYPOINT"]) == [script] == ["engagement-scorer"]
    cmd = json.loads(entry["CMD"])
    assert cmd == ["worker"] and build_parser().parse_args(cmd).command == "worker"


def test_dockerfile_environment_and_ports() -> None:
    env: dict[str, str] = {}
    for word, args in _final_stage():
        if word == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    assert env["ENGAGEMENT_WEB_BIND"] == "0.0.0.0"
    engagement = {k: v for k, v in env.items() if k.startswith(PREFIX)}
    Settings.from_env(engagement)
    exposed = [a for w, a in _final_stage() if w == "EXPOSE"]
    assert exposed == [str(DEFAULTS.web_port)]


def test_dockerfile_healthcheck_probes_healthz() -> None:
    """The image's HEALTHCHECK probes the worker's own /healthz route."""
    checks = [a for w, a in _dockerfile() if w == "HEALTHCHECK"]
    assert checks
    assert all("/healthz" in c for c in checks)
    views = (REPO / "stream_app" / "views.py").read_text("utf-8")
    assert '@app.page("/healthz")' in views


def test_dockerfile_builds_the_project_from_files_the_context_keeps() -> None:
    instructions = _dockerfile()
    copies = [a.split() for w, a in instructions if w == "COPY" and "--from" not in a]
    sources = [src for args in copies for src in args[:-1] if not src.startswith("--")]
    assert set(sources) == {"pyproject.toml", "setup.py", "README.md", "scoring", "stream_app"}
    runs = " ".join(a for w, a in instructions if w == "RUN")
    assert re.search(r"pip (wheel|install)\b[^&]* \.(\s|$)", runs), "pip must build the project"
    rules = _dockerignore()
    kept = [
        "pyproject.toml", "setup.py", "README.md", "scoring/__init__.py",
        "scoring/models/default.toml",
        "stream_app/cli.py", "stream_app/lua/cas_write.lua",
    ]  # fmt: skip
    for path in kept:
        assert (REPO / path).exists() and not _ignored(rules, path), path
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_deploy.py",
        "scoring/__pycache__/x.pyc",
        "scoring/state.cpython-311-x86_64-linux-gnu.so",  # an in-place build's leftovers
    ]:
        assert _ignored(rules, path), path


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        rules.append((negate, re.compile(_glob(pattern.strip("/")))))
    return rules


def _glob(pattern: str) -> str:
    """Docker's ``.dockerignore`` glob (Go ``filepath.Match`` plus ``**``) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return f"^{out}$"


def _ignored(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Last matching rule wins; a rule matching a parent directory matches its contents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, rx in rules:
        if any(rx.match(p) for p in prefixes):
            ignored = not negate
    return ignored


# --------------------------------------------------------------------------- AsyncAPI


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    doc: dict[str, Any] = _yaml(DOCS / "asyncapi.yaml")
    return doc


def _pointer(doc: Any, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _schema_file(message: dict[str, Any]) -> Path:
    ref = message["payload"]["schema"]["$ref"]
    path = (DOCS / ref).resolve()
    assert path.parent == (DOCS / "schemas").resolve(), ref
    return path


def test_asyncapi_validates_against_the_asyncapi_3_schema(asyncapi: dict[str, Any]) -> None:
    schema = json.loads((DATA / "asyncapi-3.0.0.schema.json").read_text("utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(asyncapi)]
    assert not errors
    broken = copy.deepcopy(asyncapi)
    broken["operations"]["publishDeadLetters"]["action"] = "publish"  # AsyncAPI 2 wording
    assert list(validator.iter_errors(broken))
    assert str(asyncapi["asyncapi"]).startswith("3.")


def test_asyncapi_references_resolve(asyncapi: dict[str, Any]) -> None:
    for ref in _refs(asyncapi):
        if ref.startswith("#/"):
            _pointer(asyncapi, ref)
        else:
            assert (DOCS / ref).resolve().is_file(), ref


def test_asyncapi_names_the_topics_the_worker_uses(asyncapi: dict[str, Any]) -> None:
    addresses = {}
    for channel in asyncapi["channels"].values():
        setting = channel["x-setting"]
        assert setting in SETTING_NAMES
        default = (
            DEFAULTS.by_customer_topic
            if setting == "ENGAGEMENT_REPARTITION_TOPIC"
            else getattr(DEFAULTS, setting.removeprefix(PREFIX).lower())
        )
        assert channel["address"] == default
        addresses[setting] = channel["address"]
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == DEFAULTS.partitions
        assert kafka["replicas"] == DEFAULTS.topic_replication_factor
        assert kafka["topicConfiguration"]["retention.ms"] == DEFAULTS.topic_retention_ms
    assert {
        addresses["ENGAGEMENT_INPUT_TOPIC"],
        addresses["ENGAGEMENT_OUTPUT_TOPIC"],
        addresses["ENGAGEMENT_DLQ_TOPIC"],
    } == {"engagement.interactions", "engagement.segment-changes", "engagement.interactions.dlq"}


def test_asyncapi_operations_match_what_the_worker_does(asyncapi: dict[str, Any]) -> None:
    actions: dict[str, set[str]] = {}
    for op in asyncapi["operations"].values():
        address = _pointer(asyncapi, op["channel"]["$ref"])["address"]
        actions.setdefault(address, set()).add(op["action"])
    assert actions == {
        DEFAULTS.input_topic: {"receive"},
        DEFAULTS.by_customer_topic: {"receive", "send"},
        DEFAULTS.output_topic: {"send"},
        DEFAULTS.dlq_topic: {"send"},
    }


def test_asyncapi_messages_document_keys_and_payloads(asyncapi: dict[str, Any]) -> None:
    messages = asyncapi["components"]["messages"]
    assert set(messages) == {"InteractionEvent", "SegmentChange", "DeadLetter"}
    for name, msg in messages.items():
        key = msg["bindings"]["kafka"]["key"]
        assert len(key["description"]) > 20, name
        assert msg["payload"]["schemaFormat"] == "application/schema+json;version=draft-07"
        assert _schema_file(msg).is_file()
        validators = _validators(_schema_file(msg))
        for example in msg["examples"]:
            for v in validators:
                v.validate(example["payload"])


# ---- payload schemas against what the app really produces and dead-letters


@functools.cache
def _validators(path: Path) -> list[jsonschema.protocols.Validator]:
    """The schema under JSON Schema 2020-12 (what the files declare) and draft-07 (what the
    AsyncAPI document declares as schemaFormat): both must give the same verdicts."""
    schema = json.loads(path.read_text("utf-8"))
    out: list[jsonschema.protocols.Validator] = []
    for cls, spec in (
        (jsonschema.Draft202012Validator, DRAFT202012),
        (jsonschema.Draft7Validator, DRAFT7),
    ):
        body = {k: v for k, v in schema.items() if k != "$schema"}
        registry: Registry[Any] = Registry().with_resource(
            schema["$id"], Resource.from_contents(body, default_specification=spec)
        )
        cls.check_schema(body)
        out.append(cls(body, registry=registry, format_checker=cls.FORMAT_CHECKER))
    return out


def _verdicts(path: Path, doc: Any) -> set[bool]:
    return {v.is_valid(doc) for v in _validators(path)}


@pytest.fixture(scope="module")
def schema_files(asyncapi: dict[str, Any]) -> dict[str, Path]:
    messages = asyncapi["components"]["messages"]
    return {name: _schema_file(msg) for name, msg in messages.items()}


def _wire(obj: Any) -> Any:
    """What a consumer reads: the app's own JSON encoding, decoded."""
    return json.loads(jsonutil.dumps(obj))


def test_input_schema_accepts_simulated_traffic(schema_files: dict[str, Path]) -> None:
    model = load_default_model()
    config = simulator.SimConfig.ending(NOW_MS, 60, customers=40, seed=3)
    events = simulator.take_events(config, 400)
    assert {e["type"] for e in events} >= {"nps_response", "email_open", "loyalty_earn"}
    for doc in events:
        parse_event(jsonutil.dumps(doc), model, now_ms=NOW_MS)
        assert _verdicts(schema_files["InteractionEvent"], _wire(doc)) == {True}, doc


def test_segment_change_schema_accepts_the_cloudevents_the_app_publishes(
    schema_files: dict[str, Path],
) -> None:
    model = load_default_model()
    config = simulator.SimConfig.ending(NOW_MS, 120, customers=60, seed=5)
    states: dict[str, Any] = {}
    changes = []
    for doc in simulator.history(config):
        ev = parse_event(jsonutil.dumps(doc), model, now_ms=NOW_MS)
        result = apply(states.get(ev.customer_id), ev, model)
        states[ev.customer_id] = result.state
        changes.extend(result.changes)
    for cid, state in states.items():  # quiet months later: decay changes
        changes.extend(advance(state, cid, NOW_MS + 90 * DAY_MS, model)[1])
    kinds = {(c.cloudevent_type, c.cause) for c in changes}
    assert {t for t, _ in kinds} == {
        "engagement.tier.changed", "engagement.segment.entered", "engagement.segment.exited",
    }  # fmt: skip
    assert {c for _, c in kinds} == {"event", "decay"}
    for change in changes:
        assert _verdicts(schema_files["SegmentChange"], _wire(cloudevent(change))) == {True}


def _dead(raw: bytes, reason: str, detail: str) -> dict[str, Any]:
    return dead_letter(
        reason=reason,
        detail=detail,
        topic=DEFAULTS.input_topic,
        partition=3,
        offset=1041,
        payload=raw,
        received_ms=NOW_MS + 0.5,
    )


def _event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "e-1",
        "customer_id": "cust-1",
        "type": "email_click",
        "timestamp": NOW_MS - 60_000,
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not _DROP}


_DROP = object()

#: Inputs a JSON Schema can reject, and the reason the worker dead-letters each with.
SCHEMA_REJECTS: list[tuple[str, Any, str]] = [
    ("not an object", [1, 2], "not_object"),
    ("missing customer_id", _event(customer_id=_DROP), "missing_field"),
    ("missing event_id", _event(event_id=_DROP), "missing_field"),
    ("missing type", _event(type=_DROP), "missing_field"),
    ("missing timestamp", _event(timestamp=_DROP), "missing_field"),
    ("empty event_id", _event(event_id=""), "bad_field"),
    ("event_id over 128", _event(event_id="x" * 129), "bad_field"),
    ("type not a string", _event(type=5), "bad_field"),
    ("properties a string", _event(properties="x"), "bad_field"),
    ("customer id with a space", _event(customer_id="cust 1"), "bad_customer_id"),
    ("customer id with a tab", _event(customer_id="cust\t1"), "bad_customer_id"),
    ("empty customer id", _event(customer_id=""), "bad_customer_id"),
    ("customer id a number", _event(customer_id=42), "bad_customer_id"),
    ("timestamp a word", _event(timestamp="yesterday"), "bad_timestamp"),
    ("timestamp without offset", _event(timestamp="2024-05-01T12:00:00"), "bad_timestamp"),
    ("timestamp a boolean", _event(timestamp=True), "bad_timestamp"),
    ("timestamp negative", _event(timestamp=-1), "bad_timestamp"),
    ("timestamp fractional ms", _event(timestamp=1.5), "bad_timestamp"),
    ("NPS score 11", _event(type="nps_response", properties={"score": 11}), "bad_nps_score"),
    ("NPS score -1", _event(type="nps_response", properties={"score": -1}), "bad_nps_score"),
    ("NPS score a string", _event(type="nps_response", properties={"score": "9"}), "bad_nps_score"),
    ("NPS without score", _event(type="nps_response", properties={}), "bad_nps_score"),
    ("NPS without properties", _event(type="nps_response"), "bad_nps_score"),
]

#: Inputs only the scoring model or the clock can judge: the schema accepts them, the worker
#: dead-letters them (the list in the AsyncAPI InteractionEvent description).
MODEL_REJECTS: list[tuple[str, Any, str]] = [
    ("type not in the model", _event(type="teleport"), "unknown_type"),
    ("an hour in the future", _event(timestamp=NOW_MS + 3_600_000), "timestamp_in_future"),
    ("not a real instant", _event(timestamp="2024-02-30T00:00:00Z"), "bad_timestamp"),
    ("NPS score 9.0", _event(type="nps_response", properties={"score": 9.0}), "bad_nps_score"),
    ("over 64 KiB", _event(properties={"blob": "x" * 70_000}), "too_large"),
]


def _reason(doc: Any) -> str | None:
    try:
        parse_event(json.dumps(doc).encode(), load_default_model(), now_ms=NOW_MS)
    except InvalidEvent as exc:
        return exc.reason
    return None


@pytest.mark.parametrize(
    ("case", "doc", "reason"), SCHEMA_REJECTS, ids=[c[0] for c in SCHEMA_REJECTS]
)
def test_input_schema_rejects_what_the_worker_dead_letters(
    case: str, doc: Any, reason: str, schema_files: dict[str, Path]
) -> None:
    assert _reason(doc) == reason
    assert _verdicts(schema_files["InteractionEvent"], doc) == {False}, case


@pytest.mark.parametrize(
    ("case", "doc", "reason"), MODEL_REJECTS, ids=[c[0] for c in MODEL_REJECTS]
)
def test_what_only_the_model_can_reject_passes_the_schema(
    case: str, doc: Any, reason: str, schema_files: dict[str, Path], asyncapi: dict[str, Any]
) -> None:
    assert _reason(doc) == reason
    assert _verdicts(schema_files["InteractionEvent"], doc) == {True}, case
    description = asyncapi["components"]["messages"]["InteractionEvent"]["description"]
    assert f"`{reason}`" in description


def test_input_schema_accepts_what_the_worker_scores(schema_files: dict[str, Path]) -> None:
    accepted = [
        _event(),
        _event(properties=None),
        _event(extra_field={"kept": True}),
        _event(timestamp="2024-05-01T12:00:00.250+02:00"),
        _event(customer_id="acme{eu}-1%"),
        _event(type="nps_response", properties={"score": 0}),
        _event(type="nps_response", properties={"score": 10, "comment": "great"}),
    ]
    for doc in accepted:
        assert _reason(doc) is None, doc
        assert _verdicts(schema_files["InteractionEvent"], doc) == {True}, doc


def test_dead_letter_schema_accepts_every_dead_letter_the_worker_writes(
    schema_files: dict[str, Path],
) -> None:
    bodies: list[dict[str, Any]] = []
    for _, doc, reason in SCHEMA_REJECTS + MODEL_REJECTS:
        raw = json.dumps(doc).encode()
        with pytest.raises(InvalidEvent) as caught:
            parse_event(raw, load_default_model(), now_ms=NOW_MS)
        assert caught.value.reason == reason
        bodies.append(_dead(raw, reason, caught.value.detail))
    for raw in (b"\xff\xfe not json", b""):
        with pytest.raises(InvalidEvent) as caught:
            parse_event(raw, load_default_model(), now_ms=NOW_MS)
        bodies.append(_dead(raw, caught.value.reason, caught.value.detail))
    for reason in DLQ_EXTRA_REASONS:
        bodies.append(_dead(json.dumps(_event()).encode(), reason, "RuntimeError: boom"))
    assert {b["reason"] for b in bodies} >= {"not_json", "too_large", "internal_error"}
    for body in bodies:
        assert _verdicts(schema_files["DeadLetter"], _wire(body)) == {True}, body
    assert _verdicts(schema_files["DeadLetter"], {**bodies[0], "reason": "bogus"}) == {False}

"""The read API's pure parts: token checks, request validation, the metrics exposition, and
``docs/openapi.yaml`` against the routes and error codes in the code.

No services: the :class:`ReadApi` here sits on a Redis client pointed at a closed port, so
any request that got past validation would fail with a connection error (which some tests
use to show that a request *was* accepted). What needs Redis is in
``tests/integration/test_api.py``.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis.exceptions
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scoring import load_default_model
from stream_app.devkit.stack import free_port
from stream_app.http import api as api_module
from stream_app.http.api import MAX_LIMIT, MAX_NPS_DAYS, Answer, ApiError, ReadApi, authorized
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.nps import NpsCounters
from stream_app.store.readstore import ReadStore
from stream_app.store.state import StateStore, connect
from stream_app.worker.metrics import LATENCY_BUCKETS, Registry, WorkerMetrics

REPO = Path(__file__).resolve().parents[1]
OPENAPI = REPO / "docs" / "openapi.yaml"
VIEWS = REPO / "stream_app" / "http" / "views.py"
TODAY = date(2024, 3, 15)


# --------------------------------------------------------------------------- authorized()


@pytest.mark.parametrize("header", [None, "", "Bearer x", "Basic dDE6dDE=", "garbage"])
def test_no_tokens_configured_lets_everything_in(header: str | None) -> None:
    assert authorized(header, []) is True


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer t1", True),
        ("Bearer t2", True),
        ("bearer t1", True),  # the scheme is case-insensitive (RFC 7235)
        ("BEARER t2", True),
        ("Bearer  t1 ", True),  # surrounding spaces are not part of the token
        (None, False),
        ("", False),
        ("Bearer", False),
        ("Bearer ", False),
        ("Bearer t3", False),
        ("Bearer t", False),  # a prefix of a token
        ("Bearer t1x", False),  # a token plus more
        ("Bearer t1,t2", False),  # the configured list itself
        ("Bearer T1", False),  # tokens are case-sensitive
        ("t1", False),  # no scheme
        ("Token t1", False),
        ("Basic dDE6dDE=", False),
        ("Bearert1", False),
        ("Bearer \udcff", False),  # a 0xff byte, as aiohttp decodes a non-UTF-8 header
        ("Bearer é", False),
    ],
)
def test_bearer_tokens(header: str | None, ok: bool) -> None:
    assert authorized(header, ["t1", "t2"]) is ok


def test_non_ascii_token() -> None:
    assert authorized("Bearer clé", ["clé"]) is True
    assert authorized("Bearer cle", ["clé"]) is False


def test_every_token_is_compared_whatever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant time over the list: no early exit on the first match (or mismatch)."""
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(api_module.hmac, "compare_digest", spy)
    tokens = ["first", "second", "third"]
    for header, ok in (("Bearer first", True), ("Bearer third", True), ("Bearer none", False)):
        calls.clear()
        assert authorized(header, tokens) is ok
        assert [b for _, b in calls] == [t.encode() for t in tokens]
        assert all(isinstance(a, bytes) for a, _ in calls)


def test_token_lists_from_the_environment() -> None:
    s = Settings.from_env({"ENGAGEMENT_API_TOKENS": " t1, t2,,", "ENGAGEMENT_OPS_TOKENS": ""})
    assert s.api_token_list == ["t1", "t2"] and s.ops_token_list == []
    assert s.redacted()["api_tokens"] == "***"
    assert authorized("Bearer t2", s.api_token_list) and authorized(None, s.ops_token_list)


# --------------------------------------------------------------------------- validation


@pytest.fixture
def read_api() -> Iterator[ReadApi]:
    """A ReadApi whose Redis is a closed port: validation errors must come before I/O."""
    model = load_default_model()
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    keys = Keys("unit", model.name)
    yield ReadApi(
        model,
        keys,
        StateStore(client, keys),
        ReadStore(client, keys, model),
        NpsCounters(client, keys),
    )
    asyncio.run(client.aclose())


def run(call: Awaitable[Answer]) -> Answer:
    async def wrapped() -> Answer:
        try:
            return await call
        except ApiError as exc:
            return exc.answer

    return asyncio.run(wrapped())


def error_code(answer: Answer) -> tuple[int, str]:
    status, body = answer
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return status, body["error"]["code"]


def reaches_redis(call: Callable[[], Awaitable[Answer]]) -> bool:
    """True when the request passed validation and went on to (the absent) Redis."""
    try:
        run(call())
    except (redis.exceptions.ConnectionError, OSError):
        return True
    return False


@pytest.mark.parametrize(
    ("query", "code", "fragment"),
    [
        ({"from": "2024-03-10", "to": "2024-03-09"}, "bad_window", "before"),
        ({"from": "2024-03-16"}, "bad_window", "before"),  # after the default ``to``: today
        ({"to": "2024-02-14"}, "bad_window", "before"),  # before the default ``from``
        ({"from": "2023-03-14", "to": "2024-03-14"}, "bad_window", f"{MAX_NPS_DAYS} days"),
        ({"from": "1999-01-01"}, "bad_window", f"{MAX_NPS_DAYS} days"),
        ({"from": "2023-02-29"}, "bad_window", "calendar"),
        ({"from": "2024-13-01"}, "bad_window", "calendar"),
        ({"to": "2024-04-31"}, "bad_window", "calendar"),
        ({"from": "2024-3-1"}, "bad_window", "YYYY-MM-DD"),
        ({"from": "20240301"}, "bad_window", "YYYY-MM-DD"),
        ({"from": "2024-03-01T00:00:00Z"}, "bad_window", "YYYY-MM-DD"),
        ({"to": "yesterday"}, "bad_window", "YYYY-MM-DD"),
        ({"to": "2024-03-01\n"}, "bad_window", ""),
        (
            {"to": "\u0662\u0660\u0662\u0664-03-01"},
            "bad_window",
            "",
        ),  # Arabic-Indic digits match \d
        ({"by": "segment"}, "bad_by", "tier"),
        ({"by": "TIER"}, "bad_by", "tier"),
        ({"by": "tier,segment"}, "bad_by", "tier"),
    ],
)
def test_nps_window_validation(
    read_api: ReadApi, query: dict[str, str], code: str, fragment: str
) -> None:
    answer = run(read_api.nps(query, today=TODAY))
    assert error_code(answer) == (400, code)
    assert fragment in answer[1]["error"]["message"]


@pytest.mark.parametrize(
    "query",
    [
        {},  # the default: the 30 days up to today
        {"by": "tier"},
        {"by": ""},
        {"from": "", "to": ""},
        {"from": "2024-03-15", "to": "2024-03-15"},  # one day
        {"from": "2023-03-16", "to": "2024-03-15"},  # exactly 366 days
        {"from": "2020-01-01", "to": "2020-12-31"},  # a leap year: 366 days
        {"to": "2030-01-01", "from": "2029-06-01"},  # the future is allowed (and empty)
    ],
)
def test_nps_windows_that_are_accepted(read_api: ReadApi, query: dict[str, str]) -> None:
    assert reaches_redis(lambda: read_api.nps(query, today=TODAY))


@pytest.mark.parametrize(
    ("customer_id", "status", "code"),
    [
        ("bad id", 400, "bad_customer_id"),
        ("", 400, "bad_customer_id"),
        ("x" * 129, 400, "bad_customer_id"),
        ("tab\there", 400, "bad_customer_id"),
        ("nl\n", 400, "bad_customer_id"),
    ],
)
def test_customer_id_validation(
    read_api: ReadApi, customer_id: str, status: int, code: str
) -> None:
    assert error_code(run(read_api.customer(customer_id))) == (status, code)
    assert error_code(run(read_api.explain(customer_id))) == (status, code)


@pytest.mark.parametrize("customer_id", ["c-1", "x" * 128, "{a}%b", "a/b", "é"])
def test_valid_customer_ids_go_to_redis(read_api: ReadApi, customer_id: str) -> None:
    assert reaches_redis(lambda: read_api.customer(customer_id))


@pytest.mark.parametrize(
    ("name", "query", "status", "code"),
    [
        ("no_such_segment", {}, 404, "unknown_segment"),
        ("advocate", {"limit": "0"}, 400, "bad_limit"),
        ("advocate", {"limit": str(MAX_LIMIT + 1)}, 400, "bad_limit"),
        ("advocate", {"limit": "5000"}, 400, "bad_limit"),
        ("advocate", {"limit": "-1"}, 400, "bad_limit"),
        ("advocate", {"limit": "abc"}, 400, "bad_limit"),
        ("advocate", {"limit": "1.5"}, 400, "bad_limit"),
        ("advocate", {"limit": ""}, 400, "bad_limit"),
        ("advocate", {"cursor": "bad cursor"}, 400, "bad_cursor"),
        ("advocate", {"cursor": "x" * 129}, 400, "bad_cursor"),
        ("advocate", {"cursor": "a\x00b"}, 400, "bad_cursor"),
    ],
)
def test_members_validation(
    read_api: ReadApi, name: str, query: dict[str, str], status: int, code: str
) -> None:
    assert error_code(run(read_api.members(name, query))) == (status, code)


@pytest.mark.parametrize(
    "query", [{}, {"limit": "1"}, {"limit": str(MAX_LIMIT)}, {"cursor": "c-1", "limit": "2"}]
)
def test_members_queries_that_are_accepted(read_api: ReadApi, query: dict[str, str]) -> None:
    assert reaches_redis(lambda: read_api.members("advocate", query))


# --------------------------------------------------------------------------- metrics


def parse(registry: Registry) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(registry.render().decode())}


COUNTERS = {
    "engagement_events_consumed": (),
    "engagement_events_applied": (),
    "engagement_events_duplicate": (),
    "engagement_events_capped": (),
    "engagement_events_redelivered": (),
    "engagement_events_forwarded": (),
    "engagement_events_dead_lettered": ("reason",),
    "engagement_segment_changes_published": ("type",),
    "engagement_fenced_write_conflicts": (),
    "engagement_decay_crossings_fired": (),
    "engagement_batch_stage_seconds": ("stage",),
    "engagement_retries": ("cause",),
}
HISTOGRAMS = (
    "engagement_batch_size",
    "engagement_batch_processing_seconds",
    "engagement_event_age_seconds",
    "engagement_redis_roundtrip_seconds",
)
GAUGES = {
    "engagement_decay_firing_lag_seconds": (),
    "engagement_event_time_seconds": ("partition",),
    "engagement_event_time_lag_seconds": ("partition",),
    "engagement_due_index_size": ("partition",),
    "engagement_consumer_lag_messages": ("topic", "partition"),
    "engagement_oldest_unprocessed_age_seconds": (),
}


def test_worker_metrics_parse_with_their_types() -> None:
    m = WorkerMetrics()
    families = parse(m.registry)
    kinds = {name: f.type for name, f in families.items()}
    assert kinds == {
        **dict.fromkeys(COUNTERS, "counter"),
        **dict.fromkeys(HISTOGRAMS, "histogram"),
        **dict.fromkeys(GAUGES, "gauge"),
    }
    assert all(f.documentation for f in families.values())
    # before anything happens: labelled metrics have no sample, histograms are all zeros
    for name in HISTOGRAMS:
        samples = {(s.name, s.labels.get("le")): s.value for s in families[name].samples}
        assert samples[(name + "_count", None)] == 0 and samples[(name + "_sum", None)] == 0
        assert samples[(name + "_bucket", "+Inf")] == 0


def test_worker_metrics_samples_after_use() -> None:
    m = WorkerMetrics()
    m.consumed.inc(7)
    m.applied.inc(5)
    m.dead.inc(reason="not_json")
    m.dead.inc(2, reason="not_json")
    m.dead.inc(reason="bad_field")
    m.published.inc(3, type="engagement.tier.changed")
    m.published.inc(type="engagement.segment.entered")
    for v in (1, 3, 500, 5000):
        m.batch_size.observe(v)
    m.event_time.set(1_700_000_000.5, partition="0")
    m.event_time.set(1_700_000_001.0, partition="3")
    m.consumer_lag.set(12, topic="in", partition="1")
    m.decay_lag.set(0.25)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in parse(m.registry).values()
        for s in f.samples
    }
    assert samples[("engagement_events_consumed_total", ())] == 7
    assert samples[("engagement_events_applied_total", ())] == 5
    assert samples[("engagement_events_dead_lettered_total", (("reason", "not_json"),))] == 3
    assert samples[("engagement_events_dead_lettered_total", (("reason", "bad_field"),))] == 1
    published = "engagement_segment_changes_published_total"
    assert samples[(published, (("type", "engagement.tier.changed"),))] == 3
    assert samples[(published, (("type", "engagement.segment.entered"),))] == 1
    assert samples[("engagement_event_time_seconds", (("partition", "0"),))] == 1_700_000_000.5
    assert samples[("engagement_event_time_seconds", (("partition", "3"),))] == 1_700_000_001.0
    lag = ("engagement_consumer_lag_messages", (("partition", "1"), ("topic", "in")))
    assert samples[lag] == 12
    assert samples[("engagement_decay_firing_lag_seconds", ())] == 0.25
    # histogram: cumulative buckets, ``le`` inclusive, +Inf is the count
    buckets = {
        float(labels[0][1]): v for (name, labels), v in samples.items()
        if name == "engagement_batch_size_bucket"
    }  # fmt: skip
    assert buckets[1] == 1 and buckets[5] == 2 and buckets[250] == 2 and buckets[500] == 3
    assert buckets[2500] == 3 and buckets[math.inf] == 4
    assert samples[("engagement_batch_size_count", ())] == 4
    assert samples[("engagement_batch_size_sum", ())] == 5504


def test_histogram_bucket_edges() -> None:
    r = Registry()
    h = r.histogram("latency_seconds", "Latency.", LATENCY_BUCKETS)
    for v in (0.0, 0.001, 0.0010001, 10.0, 10.5, math.inf):
        h.observe(v)
    (family,) = text_string_to_metric_families(r.render().decode())
    cumulative = [s.value for s in family.samples if s.name.endswith("_bucket")]
    les = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
    assert les == [repr(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]
    assert cumulative[0] == 2  # 0 and exactly 0.001
    assert cumulative[1] == 3
    assert cumulative[-2] == 4  # <= 10.0
    assert cumulative[-1] == 6
    assert cumulative == sorted(cumulative)


@pytest.mark.parametrize("value", ['with "quotes"', "back\\slash", "new\nline", "é|*|{x}", ""])
def test_label_values_round_trip(value: str) -> None:
    r = Registry()
    c = r.counter("demo_total", "Demo.", ("reason",))
    c.inc(reason=value)
    g = r.gauge("demo_gauge", "Demo gauge.", ("a", "b"))
    g.set(-1.5, a=value, b="x")
    families = {f.name: f for f in text_string_to_metric_families(r.render().decode())}
    (sample,) = families["demo"].samples
    assert sample.labels == {"reason": value} and sample.value == 1
    (sample,) = families["demo_gauge"].samples
    assert sample.labels == {"a": value, "b": "x"} and sample.value == -1.5


def test_metric_misuse_is_refused() -> None:
    r = Registry()
    c = r.counter("demo_total", "Demo.", ("reason",))
    with pytest.raises(ValueError, match="only go up"):
        c.inc(-1, reason="x")
    with pytest.raises(ValueError, match="labels"):
        c.inc(reason="x", other="y")
    with pytest.raises(ValueError, match="labels"):
        c.inc()


# --------------------------------------------------------------------------- OpenAPI


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    doc = yaml.safe_load(OPENAPI.read_text("utf-8"))
    assert isinstance(doc, dict)
    return doc


def routes() -> set[str]:
    """The paths ``views.py`` routes, with aiohttp's ``{name:regex}`` reduced to ``{name}``."""
    found = re.findall(r'@app\.page\("([^"]+)"\)', VIEWS.read_text("utf-8"))
    return {re.sub(r"\{(\w+):[^}]*\}", r"{\1}", p) for p in found}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def resolve(openapi: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its ``$ref`` points to."""
    if "$ref" not in node:
        return node
    target: Any = openapi
    for part in node["$ref"][2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    assert isinstance(target, dict)
    return target


def test_openapi_documents_every_route_and_only_those(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"] == "3.1.0"
    assert set(openapi["paths"]) == routes()
    assert len(routes()) == 9
    for path, item in openapi["paths"].items():
        assert set(item) == {"get"}, path  # GET only
        op = item["get"]
        assert op["operationId"] and op["summary"] and "200" in op["responses"], path
        for param in re.findall(r"\{(\w+)\}", path):
            declared = [resolve(openapi, p) for p in op.get("parameters", [])]
            assert any(p["name"] == param and p["in"] == "path" for p in declared), (path, param)


def test_openapi_security(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert {k: (v["type"], v["scheme"]) for k, v in schemes.items()} == {
        "apiToken": ("http", "bearer"),
        "opsToken": ("http", "bearer"),
    }
    for path, item in openapi["paths"].items():
        op = item["get"]
        if path.startswith("/v1/"):
            assert op["security"] == [{"apiToken": []}, {}], path
        elif path == "/healthz":
            assert op["security"] == [], path
        else:
            assert op["security"] == [{"opsToken": []}, {}], path
        if path != "/healthz":
            assert op["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}
    header = openapi["components"]["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"]
    assert header["schema"]["const"] == "Bearer"


def test_openapi_refs_resolve_and_schemas_are_valid(openapi: dict[str, Any]) -> None:
    for ref in set(refs(openapi)):
        assert ref.startswith("#/"), ref
        resolve(openapi, {"$ref": ref})
    for schema in openapi["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def error_validator(openapi: dict[str, Any]) -> jsonschema.Draft202012Validator:
    schema = {"$ref": "#/components/schemas/Error", "components": openapi["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_openapi_error_codes_are_the_codes_of_the_code(openapi: dict[str, Any]) -> None:
    sources = "".join(
        (REPO / "stream_app" / "http" / f).read_text("utf-8") for f in ("api.py", "views.py")
    )
    used = set(re.findall(r'(?:error|ApiError)\(\s*\d{3},\s*"(\w+)"', sources))
    documented = openapi["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert used == set(documented["code"]["enum"])
    # every example error body is a valid Error
    validator = error_validator(openapi)
    examples: list[Any] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "example" in node:
                examples.append(node["example"])
            for ex in (
                node.get("examples", {}).values() if isinstance(node.get("examples"), dict) else ()
            ):
                examples.append(ex["value"])
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    collect(openapi)
    errors = [e for e in examples if isinstance(e, dict) and "error" in e]
    assert len(errors) >= 8
    for example in errors:
        validator.validate(example)


def test_the_api_error_bodies_fit_the_documented_schema(
    read_api: ReadApi, openapi: dict[str, Any]
) -> None:
    validator = error_validator(openapi)
    for answer in (
        run(read_api.customer("bad id")),
        run(read_api.members("nope", {})),
        run(read_api.members("advocate", {"limit": "0"})),
        run(read_api.members("advocate", {"cursor": "a b"})),
        run(read_api.nps({"by": "x"}, today=TODAY)),
        run(read_api.nps({"from": "x"}, today=TODAY)),
        api_module.error(401, "unauthorized", "a valid bearer token is required"),
    ):
        validator.validate(answer[1])

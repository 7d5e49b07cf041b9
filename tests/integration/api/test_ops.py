"""Auth on the read API and the ops endpoints, /readyz following Redis, /metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_app.devkit.stack import restart_redis
from tests.integration.api.client import API_TOKENS, MEMBERS, OPS_TOKEN, Served, Spec
from tests.integration.workers import event, now_ms, unique

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- auth


V1_PATHS = [
    "/v1/tiers",
    "/v1/segments",
    "/v1/segments/advocate/members",
    "/v1/nps",
    "/v1/customers/probe-1",
    "/v1/customers/probe-1/explain",
    "/v1/customers/nobody",  # 401 before 404: existence is not revealed
]


REFUSED: list[dict[str, str]] = [
    {},
    {"token": "t3"},
    {"token": "t1x"},
    {"token": OPS_TOKEN},  # the ops token is not an API token
    {"auth": "t1"},
    {"auth": "Basic dDE6dDE="},
    {"auth": "Bearer"},
    {"token": ""},
    {"token": "t1\xff"},  # not UTF-8 on the wire: refused, not a 500
]


def template_of(path: str) -> str:
    if path.startswith("/v1/customers/"):
        return "/v1/customers/{customer_id}" + ("/explain" if path.endswith("/explain") else "")
    if path.startswith("/v1/segments/"):
        return MEMBERS
    return path


def test_auth_on_v1_and_ops_endpoints(served: dict[str, Served], spec: Spec) -> None:
    s = served["secured"]
    for path in V1_PATHS:
        for kw in REFUSED:
            reply = s.get(path, **kw)
            assert reply.status == 401, (path, kw)
            assert spec.check(template_of(path), reply)["error"]["code"] == "unauthorized"
        # the scheme is case-insensitive (RFC 7235), spaces around the token do not count
        for auth in (*(f"Bearer {t}" for t in API_TOKENS), "bearer t1", "BEARER  t2 "):
            reply = s.get(path, auth=auth)
            assert reply.status == (404 if path.endswith("nobody") else 200), (path, auth)
            spec.check(template_of(path), reply)
    # the ops endpoints take the ops token, not an API token
    for path in ("/metrics", "/readyz"):
        for kw in ({}, {"token": API_TOKENS[0]}, {"token": "nope"}):
            reply = s.get(path, **kw)
            assert reply.status == 401, (path, kw)
            assert spec.check(path, reply)["error"]["code"] == "unauthorized"
    assert s.get("/readyz", token=OPS_TOKEN).status == 200
    metrics = s.get("/metrics", token=OPS_TOKEN)
    assert metrics.status == 200 and metrics.headers.get_content_type() == "text/plain"
    # liveness is always open
    assert spec.check("/healthz", s.get("/healthz"))["status"] == "ok"


def test_no_auth_configured_and_faust_views_off(served: dict[str, Served], spec: Spec) -> None:
    open_ = served["api"]
    for path in ("/v1/tiers", "/v1/segments", "/v1/nps", "/readyz", "/metrics", "/healthz"):
        assert open_.get(path).status == 200, path
        assert open_.get(path, token="anything").status == 200, path  # a token is ignored
    for s in (served["api"], served["secured"]):
        for path in ("/router/", "/router", "/table/", "/table/x/", "/graph/", "/stats/"):
            for kw in ({}, {"token": "t1"}, {"token": OPS_TOKEN}):
                assert s.get(path, **kw).status == 404, (s.worker.name, path, kw)


# --------------------------------------------------------------------------- health


def test_readyz_follows_redis(served: dict[str, Served], spec: Spec) -> None:
    s = served["ready"]
    assert s.redis is not None

    def readyz() -> tuple[int, dict[str, Any]]:
        reply = s.get("/readyz")
        return reply.status, spec.check("/readyz", reply)

    status, body = readyz()
    assert status == 200 and body["ready"] is True, body
    checks = body["checks"]
    assert checks["redis"]["ok"] and checks["redis"]["rtt_ms"] >= 0
    assert checks["partitions"]["ok"] and checks["partitions"]["assigned"] >= 8  # 2 topics x 4
    assert checks["lag"]["ok"] and checks["broker"] == {"ok": True}

    s.redis.stop()
    down = s.worker.wait(lambda: (r := readyz())[0] == 503 and r, timeout=20, what="/readyz 503")
    body = down[1]
    assert body["ready"] is False and body["checks"]["redis"]["ok"] is False, body
    assert body["checks"]["redis"]["error"]
    assert spec.check("/healthz", s.get("/healthz"))["status"] == "ok"  # alive all along

    s.redis = restart_redis(s.redis)
    back = s.worker.wait(lambda: (r := readyz())[0] == 200 and r, timeout=30, what="/readyz 200")
    assert back[1]["ready"] is True and back[1]["checks"]["redis"]["ok"] is True
    s.worker.wait_ready()  # and it scores again


# --------------------------------------------------------------------------- metrics


def scrape(s: Served, **kw: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by prometheus_client: (sample name, labels) -> value."""
    reply = s.get("/metrics", **kw)
    assert reply.status == 200
    assert reply.headers.get_content_type() == "text/plain"
    assert reply.headers.get_param("version") == "0.0.4"
    assert reply.headers.get_param("charset") == "utf-8"
    families = list(text_string_to_metric_families(reply.body.decode()))
    s.extra["families"] = {f.name: f for f in families}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for f in families
        for sample in f.samples
    }


def test_metrics_move(served: dict[str, Served]) -> None:
    s = served["api"]
    w = s.worker
    assert s.get("/readyz").status == 200  # observes a Redis round trip
    before = scrape(s)
    tag = unique("metrics")
    t = now_ms()
    docs = [
        event(unique("e"), f"{tag}-w{i}", "webinar_attended", t - 1000)
        for i in range(2)
        for _ in range(2)
    ]
    docs.append(event(unique("e"), f"{tag}-adv", "nps_response", t - 1000, score=10))
    docs.append(docs[0])  # a duplicate
    sent = w.produce_events(docs)
    bad = w.produce([b"{not json"], w.settings.input_topic)[0]
    w.wait_processed({d["customer_id"]: s_ for d, s_ in zip(docs, sent, strict=True)})

    def get(
        metrics: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
    ) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    def delta(after: Mapping[Any, float], name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    dead = "engagement_events_dead_lettered_total"
    after = w.wait(
        lambda: (m := scrape(s)) and delta(m, dead, reason="not_json") >= 1 and m,
        timeout=30,
        what=f"the bad message at {bad} dead-lettered",
    )
    assert delta(after, "engagement_events_consumed_total") >= len(docs) + 1
    assert delta(after, "engagement_events_applied_total") == len(docs) - 1
    assert delta(after, "engagement_events_duplicate_total") == 1
    assert delta(after, dead, reason="not_json") == 1
    published = "engagement_segment_changes_published_total"
    assert delta(after, published, type="engagement.tier.changed") >= 2
    assert delta(after, published, type="engagement.segment.entered") >= 1

    families = s.extra["families"]
    for name in (
        "engagement_batch_size_messages",
        "engagement_batch_processing_seconds",
        "engagement_redis_roundtrip_seconds",
    ):
        family = families[name]
        assert family.type == "histogram", name
        buckets = [x for x in family.samples if x.name == name + "_bucket"]
        assert buckets and buckets[-1].labels["le"] == "+Inf"
        counts = [x.value for x in buckets]
        assert counts == sorted(counts)  # cumulative
        count = get(after, name + "_count")
        assert count == counts[-1] and count > 0, name
        assert get(after, name + "_sum") > 0, name
    batches = "engagement_batch_size_messages_count"
    assert get(after, batches) > get(before, batches)

    # per-partition gauges, for every partition the worker owns
    parts = {str(p) for p in range(w.settings.partitions)}
    for name in ("engagement_due_index_size",):
        assert families[name].type == "gauge"
        assert {x.labels["partition"] for x in families[name].samples} == parts
    lag = {
        (x.labels["topic"], x.labels["partition"])
        for x in families["engagement_consumer_lag_messages"].samples
    }
    assert lag == {
        (topic, p)
        for topic in (w.settings.input_topic, w.settings.by_customer_topic)
        for p in parts
    }
    for name in ("engagement_event_time_timestamp_seconds", "engagement_event_time_lag_seconds"):
        assert families[name].type == "gauge"
        assert {x.labels["partition"] for x in families[name].samples} <= parts
    owners = {str(x.partition) for x in sent}
    for p in owners:
        event_time = get(after, "engagement_event_time_timestamp_seconds", partition=p)
        assert event_time >= (t - 1000) / 1000
        assert get(after, "engagement_event_time_lag_seconds", partition=p) >= 0


def test_erase_and_merge_are_off_without_admin_tokens(served: dict[str, Served]) -> None:
    """The ``api`` and ``secured`` workers have no ENGAGEMENT_ADMIN_TOKENS: 403 even with a
    read token; nothing is sent."""
    for name, token in (("api", None), ("secured", API_TOKENS[0])):
        for path in ("/v1/customers/c-1/erase", "/v1/customers/c-1/merge"):
            refused = served[name].post(path, b'{"into": "c-2"}', token=token)
            assert refused.status == 403, (name, path)
            assert refused.json()["error"]["code"] == "admin_disabled"

"""The Grafana dashboard and its provisioning by the compose stack: every panel reads metrics a
worker exports, and compose mounts what the provisioning files name."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stream_app.worker.metrics import WorkerMetrics
from tests.deploy.specs import REPO, load_yaml

GRAFANA = REPO / "deploy" / "grafana"


def _exported_names() -> set[str]:
    """Every sample name a worker's /metrics can hold (labelled series set once each)."""
    m = WorkerMetrics()
    for gauge, label in ((m.tier_customers, "tier"), (m.segment_customers, "segment")):
        gauge.set(1, **{label: "x"})
    m.dead.inc(reason="x")
    m.retries.inc(cause="x")
    m.published.inc(type="x")
    m.stage_seconds.inc(stage="x")
    for gauge in (m.event_time, m.event_time_lag, m.due_size):
        gauge.set(1, partition="0")
    m.consumer_lag.set(1, topic="t", partition="0")
    text = m.registry.render().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def _dashboard() -> dict[str, Any]:
    path = GRAFANA / "dashboards" / "engagement-scorer.json"
    doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return doc


def test_grafana_dashboard_reads_metrics_the_worker_exports() -> None:
    exported = _exported_names()
    panels = [p for p in _dashboard()["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b((?:engagement|process)_[a-z_]+)\b", target["expr"]))
            assert names, (panel["title"], target["expr"])
            used |= names
    assert used <= exported, sorted(used - exported)
    wanted = {
        "engagement_tier_customers", "engagement_segment_customers",
        "engagement_consumer_lag_messages", "engagement_build_info",
        "engagement_retries_total", "engagement_oldest_unprocessed_age_seconds",
    }  # fmt: skip
    assert wanted <= used, sorted(wanted - used)


def test_grafana_is_provisioned_by_the_compose_stack() -> None:
    compose = load_yaml(REPO / "docker-compose.yml")
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts == {
        "./deploy/grafana/provisioning": "/etc/grafana/provisioning",
        "./deploy/grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    (source,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    prometheus = compose["services"]["prometheus"]
    port = prometheus["ports"][0].rsplit(":", 1)[1]
    assert source["url"] == f"http://prometheus:{port}" and source["type"] == "prometheus"
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "engagement-scorer.yml")[
        "providers"
    ]
    assert provider["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/engagement-scorer.json"
    for panel in _dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]

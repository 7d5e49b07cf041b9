"""Builds the faust App from the environment, and nothing else.

``topics.py`` and ``agents.py`` import :data:`app`; ``faust -A stream_app.app``
and ``engagement-scorer worker`` both run it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable

import faust
from mode import ServiceT

from stream_app.faustx import delivery as faust_delivery
from stream_app.faustx.tuning import fast_join_settings, install
from stream_app.kafka.auth import faust_credentials
from stream_app.settings import Settings

settings = Settings.from_env()


class ScorerApp(faust.App):
    """faust's App, whose Monitor sensor is optional.

    faust adds its Monitor to every app: bookkeeping on every message and event (times,
    counters per topic and partition, deques of latencies) for its ``/stats`` view, which
    is off here. The worker's own ``/metrics`` count what operators read, per batch. The
    Monitor costs a measurable share of faust's per-message time (docs/performance.md),
    so it is removed unless ``ENGAGEMENT_FAUST_MONITOR`` asks for it.
    """

    keep_monitor = False

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        dependencies = super().on_init_dependencies()
        if not self.keep_monitor:
            self.sensors.remove(self.monitor)
        return dependencies

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        if not self._rebalancing_sensor_state:  # no sensor: not "missing sensor state"
            self._rebalancing_sensor_state = {"sensors": None}


def create_app(cfg: Settings) -> faust.App:
    """A faust App tuned for this job (raw bytes in and out, fast joins)."""
    install(cfg.fetch_max_wait_ms)  # faust hard-codes 1500 ms, ~1 s of latency on Tansu
    if cfg.faust_eager_delivery:  # four tasks per message less (see faust_delivery.py)
        faust_delivery.install()
    datadir = cfg.data_dir or os.path.join(
        tempfile.gettempdir(), f"engagement-scorer-{os.getpid()}"
    )
    app = ScorerApp(
        cfg.app_id,
        broker=cfg.faust_broker,
        broker_credentials=faust_credentials(cfg),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        datadir=datadir,
        topic_partitions=cfg.partitions,
        # Tansu joins take ~30 s with faust's defaults; a 6 s session brings it to ~4 s.
        **{**fast_join_settings(), "topic_replication_factor": cfg.topic_replication_factor},
        broker_commit_interval=1.0,
        # The agent may be retrying Redis when a rebalance starts: don't block the
        # rebalance on it. Fenced writes make a late write from a lost partition harmless.
        stream_wait_empty=False,
        producer_acks=-1,
        web_enabled=cfg.web_enabled,
        web_bind=cfg.web_bind,
        web_port=cfg.web_port,
        web_in_thread=False,
        # faust's own views (/router, /table, /graph, /stats) have no auth: off.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
    )
    app.keep_monitor = cfg.faust_monitor
    return app


app = create_app(settings)

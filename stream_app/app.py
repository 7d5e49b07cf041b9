"""Builds the faust App for given settings, and nothing else.

``engagement-scorer worker`` builds it, then the worker's services, then registers the
agent and timers (:mod:`stream_app.worker.agents`) and the HTTP routes
(:mod:`stream_app.http.views`) on it.
"""

from __future__ import annotations

import os
import tempfile

import faust

from stream_app.faustx import compat
from stream_app.faustx import delivery as faust_delivery
from stream_app.faustx import producer as faust_producer
from stream_app.faustx import tables as faust_tables
from stream_app.faustx.app import ScorerApp
from stream_app.faustx.tuning import fast_join_settings, install
from stream_app.kafka.auth import faust_credentials
from stream_app.settings import Settings

#: How long the producer waits for the broker before a send fails (and the batch is
#: retried): faust's default is 20 minutes, during which a batch would hang unseen.
PRODUCER_REQUEST_TIMEOUT_S = 60.0


def create_app(cfg: Settings, *, idempotent: bool = False) -> faust.App:
    """A faust App tuned for this job (raw bytes in and out, fast joins); its producer
    idempotent when ``idempotent`` (the broker supports it: see ``worker/preflight.py``)."""
    compat.check()  # the faust internals patched below are there, or a clear error
    install(cfg.fetch_max_wait_ms)  # faust hard-codes 1500 ms, ~1 s of latency on Tansu
    faust_producer.install(idempotent)
    if cfg.faust_eager_delivery:  # four tasks per message less (see faustx/delivery.py)
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
        # One fetch hands over at most a batch: the batch input path then buffers at most
        # two batches' worth of records (faust's default: everything the consumer holds).
        broker_max_poll_records=cfg.batch_size,
        # The scoring task may be retrying Redis when a rebalance starts: don't block the
        # rebalance on it. Fenced writes make a late write from a lost partition harmless.
        stream_wait_empty=False,
        producer_acks=-1,
        producer_request_timeout=PRODUCER_REQUEST_TIMEOUT_S,
        producer_max_request_size=cfg.max_message_bytes,
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
        # No tables: the table manager starts without faust's fixed 1 s wait (faustx/tables.py).
        **faust_tables.settings(),
    )
    app.keep_monitor = cfg.faust_monitor
    return app

"""Faust settings and one patch that make a worker join and consume quickly (tuned on Tansu).

**Fetch wait.** faust-streaming 0.15.3 builds its worker consumer with ``fetch_max_wait_ms=1500``
hard-coded (``AIOKafkaConsumerThread._create_worker_consumer`` in
``faust/transport/drivers/aiokafka.py``) and has no setting for it. A fetch that finds no new
data is held by the broker, and an event produced meanwhile waits with it (on Tansu up to about
half the wait). Measured on Tansu (one worker, 4 partitions, produce -> agent ``take_events``):

=========== ======== ======== ======== ==============================
wait (ms)   p50 (ms) p95 (ms) max (ms) idle CPU, worker + broker
=========== ======== ======== ======== ==============================
1500        ~400     ~730     ~750     1.3 % + 0.2 %
500         ~130     ~245     ~260
100         ~20      ~50      ~60      1.6 % + 1.0 %
50          ~14      ~30      ~35
10          ~10      ~15      ~18      3.5 % + 3.2 %
=========== ======== ======== ======== ==============================

:func:`install` wraps that factory and sets the wait on the consumer it returns, before faust
starts it (aiokafka reads ``_fetch_max_wait_ms`` only in ``start()``, when it builds its
fetcher). It checks that attribute and fails loudly should aiokafka change.

**Co-partitioned assignment.** With no tables faust falls back to aiokafka's round-robin
assignor, which splits partition ``k`` of the input and of the by-customer topic over two
workers (8 partitions, 3 workers). :func:`install` also swaps that fallback for
:class:`stream_app.faustx.assignor.CopartitionedAssignor` on the consumer it returns.

**Group join.** Tansu answers the first JoinGroup of a group after ~``broker_session_timeout``/2
(faust's 60 s default: ~30 s before a worker gets partitions), and a member killed with SIGKILL
is noticed after ``broker_session_timeout``. :func:`fast_join_settings` uses 6 s, the smallest
session timeout a stock Kafka broker accepts (``group.min.session.timeout.ms``): a worker
processes its first event ~4.2 s after launch, a rebalance takes ~3 s, SIGKILL failover ~9 s.
Heartbeats come from faust's consumer thread, so a busy agent does not starve them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from stream_app.faustx.compat import FaustIncompatible

__all__ = [
    "DEFAULT_FETCH_MAX_WAIT_MS",
    "fast_join_settings",
    "install",
    "installed_value",
    "uninstall",
]

#: Low latency (p95 ~50 ms) without busy-polling an idle broker.
DEFAULT_FETCH_MAX_WAIT_MS = 100

_ORIGINAL_ATTR = "_engagement_original_create_worker_consumer"
_state: dict[str, int] = {}


def installed_value() -> int | None:
    """The ``fetch_max_wait_ms`` set by :func:`install`, or ``None`` if not installed."""
    return _state.get("fetch_max_wait_ms")


def install(fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS) -> None:
    """Make faust's worker consumers use ``fetch_max_wait_ms`` instead of the fixed 1500 ms.

    Process-wide and idempotent: calling it again only changes the value used by consumers
    created afterwards. Call it before the worker starts (e.g. when the app is built).
    """
    if not 0 <= fetch_max_wait_ms <= 60_000:
        raise ValueError(f"fetch_max_wait_ms must be within 0..60000, not {fetch_max_wait_ms}")
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    _state["fetch_max_wait_ms"] = fetch_max_wait_ms
    if hasattr(AIOKafkaConsumerThread, _ORIGINAL_ATTR):
        return
    original: Callable[..., Any] = AIOKafkaConsumerThread._create_worker_consumer

    @functools.wraps(original)
    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if getattr(consumer, "_fetcher", None) is not None or not hasattr(
            consumer, "_fetch_max_wait_ms"
        ):
            raise FaustIncompatible(
                "stream_app.faustx.tuning: aiokafka's AIOKafkaConsumer no longer keeps "
                "_fetch_max_wait_ms until start(); the fetch_max_wait_ms patch needs updating"
            )
        consumer._fetch_max_wait_ms = _state["fetch_max_wait_ms"]
        _copartition(consumer)
        return consumer

    setattr(AIOKafkaConsumerThread, _ORIGINAL_ATTR, original)
    setattr(AIOKafkaConsumerThread, "_create_worker_consumer", _create_worker_consumer)  # noqa: B010


def _copartition(consumer: Any) -> None:
    """Swap faust's round-robin fallback for the co-partitioning assignor.

    faust uses aiokafka's round-robin assignor when the app has no tables (ours), which does
    not keep partition ``k`` of the input and of the by-customer topic on one worker as soon
    as the partition count is not a multiple of the worker count (see ``assignor.py``).
    An app with tables keeps faust's own assignor.
    """
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    from stream_app.faustx.assignor import CopartitionedAssignor

    strategy = getattr(consumer, "_partition_assignment_strategy", None)
    if strategy is None:
        raise FaustIncompatible(
            "stream_app.faustx.tuning: aiokafka's AIOKafkaConsumer no longer keeps "
            "_partition_assignment_strategy until start(); the assignor patch needs updating"
        )
    if list(strategy) == [RoundRobinPartitionAssignor]:
        consumer._partition_assignment_strategy = (CopartitionedAssignor,)


def uninstall() -> None:
    """Undo :func:`install` (faust's own 1500 ms again for consumers created afterwards)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread.__dict__.get(_ORIGINAL_ATTR)
    if original is not None:
        setattr(AIOKafkaConsumerThread, "_create_worker_consumer", original)  # noqa: B010
        delattr(AIOKafkaConsumerThread, _ORIGINAL_ATTR)
    _state.clear()


def fast_join_settings(session_timeout: float = 6.0) -> dict[str, Any]:
    """``faust.App`` keyword settings for a quick group join, single-replica topics.

    ``dict[str, Any]`` so that ``faust.App(id, **fast_join_settings())`` type-checks.

    ``topic_disable_leader`` skips the ``<app id>-__assignor-__leader`` topic (only needed
    for ``on_leader=True`` timers/tasks); ``table_standby_replicas=0`` avoids standby
    changelog readers (and, without tables, selects faust's round-robin fallback, which
    :func:`install` replaces with the co-partitioning assignor).
    """
    return {
        "broker_session_timeout": session_timeout,
        "broker_rebalance_timeout": max(session_timeout, 10.0),
        "broker_heartbeat_interval": min(1.0, session_timeout / 3),
        "broker_request_timeout": max(30.0, session_timeout),  # must be >= session timeout
        "consumer_auto_offset_reset": "earliest",
        "topic_replication_factor": 1,
        "topic_disable_leader": True,
        "table_standby_replicas": 0,
    }

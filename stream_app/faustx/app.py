"""faust's App, whose Monitor sensor is optional."""

from __future__ import annotations

from collections.abc import Iterable

import faust
from mode import ServiceT


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

"""faust's App, whose Monitor sensor is optional and whose consumer can be adapted."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Called with the consumer when faust builds it (before the app starts it):
        #: :meth:`stream_app.faustx.intake.BatchInput.attach`.
        self.consumer_hooks: list[Callable[[Any], None]] = []

    def _new_consumer(self) -> Any:
        consumer = super()._new_consumer()
        for hook in self.consumer_hooks:
            hook(consumer)
        return consumer

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        dependencies = super().on_init_dependencies()
        if not self.keep_monitor:
            self.sensors.remove(self.monitor)
        return dependencies

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        if not self._rebalancing_sensor_state:  # no sensor: not "missing sensor state"
            self._rebalancing_sensor_state = {"sensors": None}

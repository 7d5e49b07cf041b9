"""The worker's garbage collector: start-up objects frozen, so full collections stay short.

A full (generation 2) collection walks every object the collector tracks, including
everything faust, aiokafka, the model and the worker built at start-up. At a few
thousand events/s CPython's default thresholds (700, 10, 10) run one about once a
second, and on a 2-core machine each took 60-70 ms: a stall of the whole event loop,
in the latency of every event waiting at that moment, and ~5 % of the worker's CPU.

:func:`freeze`, called once when the worker has built its pipeline, moves every
object alive at that point to the permanent generation (:func:`gc.freeze`), which
collections never walk. Full collections then took ~8 ms; cycles created later are
still collected. The thresholds stay Python's: a larger generation-0 threshold
(5,000 or 50,000) made each young collection long and the latency worse.

``ENGAGEMENT_GC_FREEZE=false`` leaves the collector as Python sets it.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze() -> int:
    """Collect start-up garbage, then freeze every object alive; how many are frozen."""
    gc.collect()  # start-up garbage is not worth freezing
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("gc: %d start-up objects frozen (never walked by collections)", frozen)
    return frozen

"""The faust-streaming internals ``stream_app.faustx`` relies on, checked at start-up.

Every use of a private attribute of faust, mode or aiokafka lives in this package:

- ``AIOKafkaConsumerThread._create_worker_consumer``, and aiokafka's
  ``AIOKafkaConsumer._fetch_max_wait_ms`` and ``._partition_assignment_strategy``:
  :mod:`.tuning` (the fetch wait, the co-partitioning assignor);
- ``Consumer._drain_messages`` (which calls ``wait_first``): :mod:`.delivery`;
- the batch input path, :mod:`.intake`: ``Consumer._drain_messages`` (replaced on the
  consumer), ``_wait_next_records``, ``_to_message``, ``_add_gap``, the read offsets, the
  ack bookkeeping (``_acked``, ``_acked_index``, ``_n_acked``, ``_committed_offset``,
  ``_waiting_for_ack``, ``_unacked_messages``, ``_commit_every``) and
  ``faust.types.tuples.ack_lock``; ``App._consumer``;
- ``Consumer._committed_offset``: :class:`.adapters.FaustConsumer`;
- ``Stream._enable_passive`` and ``Stream._processors``: :mod:`.take`;
- ``App._rebalancing_sensor_state``: :class:`.app.ScorerApp`;
- ``Producer._settings_extra`` (of the aiokafka driver): :mod:`.producer`;
- ``TableManager._update_channels`` and ``.recovery`` (its start without tables):
  :mod:`.tables`.

:func:`check` runs when the App is built: a faust-streaming release other than the
one these were written against, or one without these attributes, stops the worker
with a :class:`FaustIncompatible` error saying what to install. The aiokafka consumer's
attributes only exist on an instance; :mod:`.tuning` checks them on the consumer it
patches, before faust starts it.
"""

from __future__ import annotations

from stream_app.errors import StreamAppError

#: The faust-streaming release (major, minor) these patches were written against.
TESTED_FAUST = (0, 15)


#: The Consumer internals of the batch input path (:mod:`.intake`).
INTAKE_CONSUMER = (
    "_wait_next_records",
    "_to_message",
    "_add_gap",
    "_read_offset",
    "_buffered_partitions",
    "_acked",
    "_acked_index",
    "_n_acked",
    "_waiting_for_ack",
    "_unacked_messages",
    "_commit_every",
    "perform_seek",
    "flow_active",
    "suspend_flow",
)


class FaustIncompatible(StreamAppError):
    """The installed faust-streaming lacks an internal the worker relies on."""


def _declares(cls: type, name: str) -> bool:
    """True when ``cls`` has ``name``, as a class attribute or an annotated instance one."""
    return hasattr(cls, name) or any(name in getattr(k, "__annotations__", {}) for k in cls.__mro__)


def check() -> None:
    """Raise :class:`FaustIncompatible` unless the faust internals used here are there."""
    import faust
    from faust.app.base import App
    from faust.streams import Stream
    from faust.tables import TableManager
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer

    version = str(faust.__version__)
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor != TESTED_FAUST:
        wanted = ".".join(map(str, TESTED_FAUST))
        raise FaustIncompatible(
            f"faust-streaming {version} is installed, but the worker patches internals of "
            f"faust-streaming {wanted}.x (stream_app/faustx): install faust-streaming=={wanted}.*"
        )
    needed = {
        AIOKafkaConsumerThread: ("_create_worker_consumer",),
        Consumer: (
            "_drain_messages",
            "_committed_offset",
            "wait_first",
            *INTAKE_CONSUMER,
        ),
        Stream: ("_enable_passive", "_processors"),
        App: ("_rebalancing_sensor_state", "_consumer"),
        Producer: ("_settings_extra",),
        TableManager: ("_update_channels", "recovery"),
    }
    missing = [
        f"{cls.__name__}.{name}"
        for cls, names in needed.items()
        for name in names
        if not _declares(cls, name)
    ]
    import faust.types.tuples

    if not hasattr(faust.types.tuples, "ack_lock"):
        missing.append("faust.types.tuples.ack_lock")
    if missing:
        raise FaustIncompatible(
            f"faust-streaming {version} lacks {', '.join(missing)}, which the worker relies "
            "on (stream_app/faustx)"
        )

"""The faust producer made idempotent (faust-streaming only asks for it inside transactions).

aiokafka's idempotent producer numbers each batch it sends per partition, so the broker
drops a batch the producer sent again after a timeout, and keeps a partition's batches
in order across retries. faust-streaming 0.15 turns it on only for transactional apps
(``Producer._settings_extra``); :func:`install` wraps that method so that every producer
the worker builds asks for it. Whether the broker supports it is found out before the
App is built (:func:`stream_app.kafka.idempotence.resolve`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

_ORIGINAL_ATTR = "_engagement_original_settings_extra"
_state: dict[str, bool] = {"idempotent": False}


def install(idempotent: bool) -> None:
    """Make faust's producers idempotent (or not, for producers built afterwards)."""
    from faust.transport.drivers.aiokafka import Producer

    _state["idempotent"] = idempotent
    if hasattr(Producer, _ORIGINAL_ATTR):
        return
    original: Callable[..., Mapping[str, Any]] = Producer._settings_extra

    @functools.wraps(original)
    def _settings_extra(self: Any) -> Mapping[str, Any]:
        extra = dict(original(self))
        if _state["idempotent"]:
            extra.update(acks="all", enable_idempotence=True)
        return extra

    setattr(Producer, _ORIGINAL_ATTR, original)
    setattr(Producer, "_settings_extra", _settings_extra)  # noqa: B010


def installed() -> bool:
    """Whether producers built now ask for idempotence."""
    return _state["idempotent"]

"""The read API of whichever model the request asks for: the one in force, or the shadow.

The registry is read at every request (one ``HMGET``; a model's slot is read once), so
the API serves the new model from the instant of a promotion, whatever the worker
serving the request has noticed yet. ``?model=shadow`` answers from the shadow's
namespace (for a shadow built from current state, a customer it has not written yet is
derived on the fly, as the worker would).
"""

from __future__ import annotations

from typing import cast

from stream_app.http.api import ReadApi, bad_model, no_model, no_shadow
from stream_app.models.lanes import Derivation, LaneStore
from stream_app.models.registry import ModelRegistry, ModelSlot
from stream_app.store.nps import NpsCounters
from stream_app.store.readstore import ReadStore
from stream_app.store.state import StateStore

WHICH = ("active", "shadow")


class ModelApis:
    """:class:`ReadApi` per registered model, chosen per request."""

    def __init__(self, registry: ModelRegistry, prefix: str) -> None:
        self.registry = registry
        self.prefix = prefix
        self._slots: dict[int, ModelSlot] = {}
        self._apis: dict[int, ReadApi] = {}

    async def _slot(self, slot_id: int) -> ModelSlot:
        slot = self._slots.get(slot_id)
        if slot is None:
            slot = self._slots[slot_id] = await self.registry.read_slot(slot_id)
        return slot

    async def get(self, which: str | None) -> ReadApi:
        """The API of ``active`` (None: the default) or ``shadow``."""
        which = which or "active"
        if which not in WHICH:
            raise bad_model()
        client = self.registry.client
        raw = cast(
            list[bytes | None],
            await client.hmget(self.registry.keys.registry(), ["active", "shadow"]),
        )
        ids = {w: int(v) if v else None for w, v in zip(WHICH, raw, strict=True)}
        slot_id = ids[which]
        if slot_id is None:
            if which == "shadow":
                raise no_shadow()
            raise no_model()
        api = self._apis.get(slot_id)
        if api is None:
            slot = await self._slot(slot_id)
            derivation = None
            if slot.mode == "from-current" and slot.source in ids.values():
                source = await self._slot(slot.source)
                derivation = Derivation(
                    StateStore(client, source.keys(self.prefix)), source.model, slot.model
                )
            keys = slot.keys(self.prefix)
            store = LaneStore(client, keys, derivation=derivation)
            readstore = ReadStore(client, keys, slot.model)
            api = ReadApi(slot.model, keys, store, readstore, NpsCounters(client, keys))
            if derivation is None:  # (a derivation depends on which models are scored)
                self._apis[slot_id] = api
        return api

"""The read API of whichever model the request asks for: the one in force, or the shadow.

Which models those are is what the worker's :class:`~stream_app.models.conductor.Conductor`
last read from the registry (it reads it every half second, and before it scores anything
after a switch), so a request costs no read of the registry. ``?model=shadow`` answers
from the shadow's namespace (for a shadow built from current state, a customer it has not
written yet is derived on the fly, as the worker would).
"""

from __future__ import annotations

from collections.abc import Callable

from stream_app.http.api import ReadApi, bad_model, no_shadow
from stream_app.models.lanes import Derivation, LaneStore
from stream_app.models.registry import ModelSlot, RegistryState
from stream_app.store.lifecycle import LifecycleStore
from stream_app.store.nps import NpsCounters
from stream_app.store.readstore import ReadStore
from stream_app.store.state import RedisClient, StateStore

WHICH = ("active", "shadow")


class ModelApis:
    """:class:`ReadApi` per registered model, chosen per request."""

    def __init__(
        self,
        current: Callable[[], RegistryState],
        client: RedisClient,
        prefix: str,
        *,
        suppression_secret: bytes | None = None,
    ) -> None:
        self.current = current
        self.client = client
        self.prefix = prefix
        #: With it, a customer without a record is told erased or merged (per model).
        self.secret = suppression_secret
        self._apis: dict[tuple[int, int], ReadApi] = {}

    async def get(self, which: str | None) -> ReadApi:
        """The API of ``active`` (None: the default) or ``shadow``."""
        which = which or "active"
        if which not in WHICH:
            raise bad_model()
        state = self.current()
        slot = state.active if which == "active" else state.shadow
        if slot is None:
            raise no_shadow()
        source = self._source(slot, state)
        key = (slot.id, 0 if source is None else source.id)
        api = self._apis.get(key)
        if api is None:
            api = self._apis[key] = self._build(slot, source)
        return api

    @staticmethod
    def _source(slot: ModelSlot, state: RegistryState) -> ModelSlot | None:
        """The model a shadow built from current state is derived from, while it is scored."""
        if slot.mode != "from-current" or not slot.source:
            return None
        for other in (state.active, state.shadow):
            if other is not None and other.id == slot.source:
                return other
        return None

    def _build(self, slot: ModelSlot, source: ModelSlot | None) -> ReadApi:
        client, keys = self.client, slot.keys(self.prefix)
        derivation = None
        if source is not None:
            base = StateStore(client, source.keys(self.prefix))
            derivation = Derivation(base, source.model, slot.model)
        store = LaneStore(client, keys, derivation=derivation)
        readstore = ReadStore(client, keys, slot.model)
        lifecycle = None
        if self.secret is not None:
            segments = [r.name for r in slot.model.segments]
            lifecycle = LifecycleStore(client, keys, secret=self.secret, segments=segments)
        return ReadApi(
            slot.model,
            keys,
            store,
            readstore,
            NpsCounters(client, keys),
            lifecycle=lifecycle,
        )

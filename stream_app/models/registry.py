"""The model registry: which scoring model is in force for a deployment, held in Redis.

Every worker of a deployment reads the model in force from here, so all of them score
with the same one whatever their ``ENGAGEMENT_MODEL_FILE`` says; the file only seeds an
empty deployment. Each model ever registered is a numbered **slot**: its TOML text, its
SHA-256, name and version, and the **namespace** its data keys live under
(:class:`stream_app.store.keys.Keys`): the model's name for the first one of a deployment
(so data written before the registry existed stays where it is), ``<name>@<slot>`` for
the others, so a new model never reads or writes another's state.

At most two models are scored at once: the **active** one, whose changes are published,
and a **shadow**: a candidate scored silently before a promotion, or after a promotion
the model it replaced, kept up to date so that a rollback is the same switch backwards.
The **epoch** counts switches (promotions and rollbacks); ``switched_at`` is the instant
of the last one, the time of the changes it publishes.

Every change goes through one compare-and-set script (``lua/registry_cas.lua``) on the
registry's ``rev``: two operators (or two workers seeding an empty deployment) never
both win. All registry keys share the hash tag ``{models}``, one Redis Cluster slot.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, cast

from scoring import Model, parse_model_text
from stream_app.errors import StreamAppError
from stream_app.store.keys import Keys, RegistryKeys
from stream_app.store.state import RedisClient, lua_source

Mode = Literal["seed", "replay", "from-current"]


class RegistryError(StreamAppError):
    """A registry request that cannot be done now; the message says why."""


class RegistryConflict(RegistryError):
    """The registry changed between reading it and writing it; read it again."""


def text_hash(text: str) -> str:
    """The SHA-256 of a model file's text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=16)
def _parse(text: str, source: str) -> Model:
    return parse_model_text(text, source)


@dataclass(frozen=True, slots=True)
class ModelSlot:
    """One registered model."""

    id: int
    name: str
    version: int
    sha256: str
    toml: str
    namespace: str
    mode: Mode
    created_at_ms: float
    origin: str
    #: For a model derived from current state: the slot it was derived from (else 0).
    source: int = 0

    @property
    def model(self) -> Model:
        """The parsed model (parsed once per text)."""
        return _parse(self.toml, f"model slot {self.id} in Redis")

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} (slot {self.id})"

    def keys(self, prefix: str) -> Keys:
        """The keys of this model's data."""
        return Keys(prefix, self.namespace)

    def group(self, app_id: str) -> str:
        """The consumer group of this model's replay."""
        return f"{app_id}.model-{self.id}"

    def fields(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": str(self.version),
            "sha256": self.sha256,
            "toml": self.toml,
            "namespace": self.namespace,
            "mode": self.mode,
            "created_at": repr(self.created_at_ms),
            "origin": self.origin,
            "source": str(self.source),
        }

    @classmethod
    def from_fields(cls, slot_id: int, raw: Mapping[str, str]) -> ModelSlot:
        return cls(
            slot_id,
            raw["name"],
            int(raw["version"]),
            raw["sha256"],
            raw["toml"],
            raw["namespace"],
            cast(Mode, raw["mode"]),
            float(raw["created_at"]),
            raw.get("origin", ""),
            int(raw.get("source", "0") or 0),
        )


def new_slot(
    slot_id: int, text: str, *, mode: Mode, origin: str, now_ms: float, source: int = 0
) -> ModelSlot:
    """A slot for ``text`` (parsed here: an invalid model raises ``InvalidModel``)."""
    model = parse_model_text(text, origin or "<model>")
    namespace = model.name if mode == "seed" else f"{model.name}@{slot_id}"
    return ModelSlot(
        slot_id,
        model.name,
        model.version,
        text_hash(text),
        text,
        namespace,
        mode,
        now_ms,
        origin,
        source if mode == "from-current" else 0,
    )


@dataclass(frozen=True, slots=True)
class RegistryState:
    """The registry as read at one moment."""

    rev: int
    epoch: int
    active: ModelSlot
    shadow: ModelSlot | None
    switched_at_ms: float | None
    next_id: int
    partitions: int

    def slot(self, which: str) -> ModelSlot | None:
        """``active`` or ``shadow``."""
        return self.active if which == "active" else self.shadow


class ModelRegistry:
    """Reads and changes one deployment's registry."""

    def __init__(self, client: RedisClient, keys: RegistryKeys) -> None:
        self.client = client
        self.keys = keys
        self._cas = lua_source("registry_cas.lua")

    async def _hgetall(self, key: str) -> dict[str, str]:
        raw = cast(dict[bytes, bytes], await self.client.hgetall(key))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def read(self) -> RegistryState | None:
        """The registry now (None: empty deployment, no model registered yet)."""
        reg = await self._hgetall(self.keys.registry())
        if not reg.get("active"):
            return None
        active = await self.read_slot(int(reg["active"]))
        shadow_id = reg.get("shadow", "")
        shadow = await self.read_slot(int(shadow_id)) if shadow_id else None
        switched = reg.get("switched_at", "")
        return RegistryState(
            int(reg["rev"]),
            int(reg.get("epoch", "0")),
            active,
            shadow,
            float(switched) if switched else None,
            int(reg.get("next", "1")),
            int(reg.get("partitions", "0")),
        )

    async def read_slot(self, slot_id: int) -> ModelSlot:
        raw = await self._hgetall(self.keys.slot(slot_id))
        if not raw:
            raise RegistryError(f"model slot {slot_id} is named by the registry but missing")
        return ModelSlot.from_fields(slot_id, raw)

    async def epoch(self) -> int:
        """The registry's epoch alone (one ``HGET``)."""
        raw = await self.client.hget(self.keys.registry(), "epoch")
        return int(raw or 0)

    async def _write(
        self, rev: int | None, changes: Sequence[tuple[str, Mapping[str, str]]]
    ) -> None:
        """Set ``changes`` (key, fields) if the registry's rev is still ``rev``."""
        keys = [key for key, _ in changes]
        args: list[str] = ["" if rev is None else str(rev)]
        for _, fields in changes:
            args.append(str(len(fields)))
            for name, value in fields.items():
                args += [name, value]
        if not await self.client.eval(self._cas, len(keys), *keys, *args):
            raise RegistryConflict("the model registry changed meanwhile; run the command again")

    async def seed(
        self, text: str, *, origin: str, partitions: int, now_ms: float | None = None
    ) -> RegistryState:
        """Register ``text`` as the model in force of an empty deployment (slot 1).

        If another process seeded it first, nothing is written: the registry as it is
        comes back either way.
        """
        slot = new_slot(1, text, mode="seed", origin=origin, now_ms=now_ms or _now_ms())
        registry = {
            "epoch": "0",
            "active": "1",
            "shadow": "",
            "switched_at": "",
            "next": "1",
            "partitions": str(partitions),
        }
        with contextlib.suppress(RegistryConflict):  # someone else seeded it first
            await self._write(
                None, [(self.keys.registry(), registry), (self.keys.slot(1), slot.fields())]
            )
        state = await self.read()
        if state is None:
            raise RegistryError("the model registry could not be seeded")
        return state

    async def add_shadow(
        self, state: RegistryState, text: str, *, mode: Mode, origin: str
    ) -> RegistryState:
        """Register ``text`` as the shadow of ``state`` (refused if there is one already)."""
        if state.shadow is not None:
            raise RegistryError(
                f"there is a shadow already: {state.shadow.label}; promote it, or retire it "
                "with `engagement-scorer model retire`"
            )
        slot_id = state.next_id + 1
        slot = new_slot(
            slot_id, text, mode=mode, origin=origin, now_ms=_now_ms(), source=state.active.id
        )
        changes = [
            (self.keys.registry(), {"shadow": str(slot_id), "next": str(slot_id)}),
            (self.keys.slot(slot_id), slot.fields()),
        ]
        if mode != "replay":  # built from current state: scored with every batch at once
            changes.append((self.keys.engaged(slot_id), _every(state.partitions)))
        await self._write(state.rev, changes)
        return await self._must_read()

    async def switch(self, state: RegistryState, *, at_ms: float) -> RegistryState:
        """Swap the active model and the shadow (a promotion or a rollback): epoch + 1."""
        if state.shadow is None:
            raise RegistryError("there is no shadow model to switch to")
        fields = {
            "active": str(state.shadow.id),
            "shadow": str(state.active.id),
            "epoch": str(state.epoch + 1),
            "switched_at": repr(float(at_ms)),
        }
        # the model that was in force was scored everywhere: a rollback may come at once
        everywhere = (self.keys.engaged(state.active.id), _every(state.partitions))
        await self._write(state.rev, [(self.keys.registry(), fields), everywhere])
        return await self._must_read()

    async def retire(self, state: RegistryState) -> ModelSlot:
        """Stop scoring the shadow of ``state``; the slot stays (its data is the caller's)."""
        if state.shadow is None:
            raise RegistryError("there is no shadow model to retire")
        await self._write(state.rev, [(self.keys.registry(), {"shadow": ""})])
        return state.shadow

    async def _must_read(self) -> RegistryState:
        state = await self.read()
        if state is None:
            raise RegistryError("the model registry vanished")
        return state

    # ------------------------------------------------------------------ progress marks

    async def engaged(self, slot_id: int) -> set[int]:
        """Partitions where the worker group scores shadow ``slot_id`` with the batches."""
        raw = cast(dict[bytes, bytes], await self.client.hgetall(self.keys.engaged(slot_id)))
        return {int(k) for k in raw}

    async def engage(self, slot_id: int, partitions: Sequence[int]) -> None:
        if partitions:
            fields = [x for p in partitions for x in (str(p), "1")]
            await self.client.execute_command("HSET", self.keys.engaged(slot_id), *fields)

    async def cutover(self) -> dict[int, int]:
        """Partition -> the epoch its customers were switched to."""
        raw = cast(dict[bytes, bytes], await self.client.hgetall(self.keys.cutover()))
        return {int(k): int(v) for k, v in raw.items()}

    async def mark_cutover(self, partition: int, epoch: int, changes: int) -> None:
        """Partition ``partition`` switched to ``epoch``, publishing ``changes``."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.keys.switched(epoch), str(partition), changes)
        pipe.hset(self.keys.cutover(), str(partition), str(epoch))
        await pipe.execute()

    async def switched(self, epoch: int) -> dict[int, int]:
        """Partition -> model changes its switch to ``epoch`` published (at least once)."""
        raw = cast(dict[bytes, bytes], await self.client.hgetall(self.keys.switched(epoch)))
        return {int(k): int(v) for k, v in raw.items()}

    async def replay_progress(self, slot_id: int) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the last offset the shadow's replay processed."""
        raw = cast(dict[bytes, bytes], await self.client.hgetall(self.keys.progress(slot_id)))
        out: dict[tuple[str, int], int] = {}
        for k, v in raw.items():
            topic, partition = k.decode().rsplit(":", 1)
            out[topic, int(partition)] = int(v)
        return out

    async def record_progress(self, slot_id: int, offsets: Mapping[tuple[str, int], int]) -> None:
        if offsets:
            fields = [x for (t, p), o in offsets.items() for x in (f"{t}:{p}", str(o))]
            await self.client.execute_command("HSET", self.keys.progress(slot_id), *fields)


def _every(partitions: int) -> dict[str, str]:
    return {str(p): "1" for p in range(partitions)}


def _now_ms() -> float:
    return time.time() * 1000.0

"""``engagement-scorer model show``: the model in force, the shadow and their progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_app.contracts import rfc3339
from stream_app.models.registry import ModelRegistry, ModelSlot, RegistryState


@dataclass
class Status:
    """What the registry says, with the per-partition progress of the shadow and switch."""

    state: RegistryState | None
    #: Partitions where the worker group scores the shadow with every batch.
    engaged: set[int] = field(default_factory=set)
    #: The shadow's replay: (topic, partition) -> last offset processed.
    replay: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Partition -> the epoch its customers were switched to.
    cutover: dict[int, int] = field(default_factory=dict)
    #: Partition -> model changes the last switch published there.
    switched: dict[int, int] = field(default_factory=dict)

    @property
    def partitions(self) -> int:
        return 0 if self.state is None else self.state.partitions

    @property
    def shadow_ready(self) -> bool:
        """The shadow is scored with every batch on every partition: it may be switched to."""
        return self.state is not None and len(self.engaged) >= self.partitions > 0

    @property
    def switch_done(self) -> bool:
        """Every partition's customers are switched to the current epoch."""
        if self.state is None or self.state.epoch == 0:
            return True
        epoch = self.state.epoch
        return all(self.cutover.get(p, -1) >= epoch for p in range(self.partitions))

    def cut_over(self) -> int:
        epoch = 0 if self.state is None else self.state.epoch
        return sum(1 for p in range(self.partitions) if self.cutover.get(p, -1) >= epoch)

    def _slot_json(self, slot: ModelSlot | None) -> dict[str, Any] | None:
        if slot is None:
            return None
        return {
            "slot": slot.id,
            "name": slot.name,
            "version": slot.version,
            "sha256": slot.sha256,
            "namespace": slot.namespace,
            "mode": slot.mode,
            "origin": slot.origin,
            "registered_at": rfc3339(slot.created_at_ms),
        }

    def as_json(self) -> dict[str, Any]:
        if self.state is None:
            return {"in_force": None, "shadow": None}
        st = self.state
        shadow = self._slot_json(st.shadow)
        if shadow is not None:
            shadow["engaged_partitions"] = sorted(self.engaged)
            shadow["ready"] = self.shadow_ready
            shadow["replay"] = {f"{t}:{p}": o for (t, p), o in sorted(self.replay.items())}
            shadow["role"] = (
                "candidate" if st.shadow and st.shadow.id > st.active.id else "previous"
            )
        return {
            "in_force": self._slot_json(st.active),
            "shadow": shadow,
            "epoch": st.epoch,
            "partitions": st.partitions,
            "switch": {
                "at": None if st.switched_at_ms is None else rfc3339(st.switched_at_ms),
                "partitions_done": self.cut_over(),
                "done": self.switch_done,
                "changes_published": sum(self.switched.values()),
            },
        }

    def text(self) -> str:
        if self.state is None:
            return "no model registered yet: the first worker to start registers its model file\n"
        st = self.state
        a = st.active
        out = [
            f"model in force: {a.label}, namespace {a.namespace}, sha256 {a.sha256[:12]}, "
            f"registered {rfc3339(a.created_at_ms)} ({a.mode})"
        ]
        s = st.shadow
        if s is None:
            out.append("shadow: none")
        else:
            role = "candidate" if s.id > a.id else "previous model, kept for a rollback"
            out.append(
                f"shadow: {s.label} ({role}), namespace {s.namespace}, built by {s.mode}, "
                f"registered {rfc3339(s.created_at_ms)}"
            )
            ready = "ready to switch" if self.shadow_ready else "not ready yet"
            out.append(
                f"  scored with every batch on {len(self.engaged)}/{self.partitions} "
                f"partitions: {ready}"
            )
            if self.replay:
                offsets = ", ".join(f"{t}:{p}@{o}" for (t, p), o in sorted(self.replay.items()))
                out.append(f"  replay progress (last offset processed): {offsets}")
        if st.epoch:
            at = rfc3339(st.switched_at_ms) if st.switched_at_ms is not None else "-"
            out.append(
                f"last switch: epoch {st.epoch} at {at}: {self.cut_over()}/{self.partitions} "
                f"partitions switched, {sum(self.switched.values()):,} model changes published"
            )
        return "\n".join(out) + "\n"


async def read_status(registry: ModelRegistry) -> Status:
    """The status now."""
    state = await registry.read()
    status = Status(state)
    if state is None:
        return status
    if state.shadow is not None:
        status.engaged = await registry.engaged(state.shadow.id)
        status.replay = await registry.replay_progress(state.shadow.id)
    status.cutover = await registry.cutover()
    if state.epoch:
        status.switched = await registry.switched(state.epoch)
    return status

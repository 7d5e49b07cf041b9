"""The operator's side of a model change: register a shadow, switch, retire.

Each one reads the registry, checks that the step makes sense now, and writes it with
the registry's compare-and-set; the workers notice within their poll interval and do the
work (scoring the shadow, switching each partition's customers). :func:`wait_switched`
follows a switch until every partition has published its changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from scoring import parse_model_text
from scoring.migrate import compare
from stream_app.models.registry import (
    Mode,
    ModelRegistry,
    ModelSlot,
    RegistryError,
    RegistryState,
)
from stream_app.models.status import Status, read_status
from stream_app.store.keys import Keys
from stream_app.store.state import RedisClient

#: How long :func:`retire` waits for the workers to stop writing a retired model's keys.
RETIRE_GRACE_S = 2.0


async def _registered(registry: ModelRegistry) -> RegistryState:
    state = await registry.read()
    if state is None:
        raise RegistryError(
            "no model is registered yet: start a worker first (its ENGAGEMENT_MODEL_FILE "
            "becomes the model in force)"
        )
    return state


async def add_shadow(
    registry: ModelRegistry, text: str, origin: str, *, from_current: bool
) -> ModelSlot:
    """Register ``text`` as the shadow; the workers start scoring it."""
    state = await _registered(registry)
    new = parse_model_text(text, origin)
    comparison = compare(state.active.model, new)
    if comparison.refused:
        raise RegistryError(comparison.refused)
    if comparison.same:
        raise RegistryError(f"{origin} is the model in force ({state.active.label})")
    if from_current and not comparison.from_current:
        raise RegistryError(
            f"{origin} cannot be built from current state; it needs a replay because of: "
            + "; ".join(comparison.needs_replay)
            + " (run `engagement-scorer model shadow` without --from-current)"
        )
    mode: Mode = "from-current" if from_current else "replay"
    state = await registry.add_shadow(state, text, mode=mode, origin=origin)
    assert state.shadow is not None
    return state.shadow


@dataclass(frozen=True, slots=True)
class Switched:
    """A switch the registry accepted."""

    before: RegistryState
    after: RegistryState


async def switch(registry: ModelRegistry, *, rollback: bool, now_ms: float) -> Switched:
    """Promote the candidate shadow (or, ``rollback``, switch back to the previous model)."""
    status = await read_status(registry)
    state = status.state
    if state is None:
        raise RegistryError("no model is registered yet")
    shadow = state.shadow
    if shadow is None:
        what = "previous model (it was retired)" if rollback else "shadow model"
        raise RegistryError(f"there is no {what} to switch to")
    if rollback and shadow.id > state.active.id:
        raise RegistryError(
            f"the shadow {shadow.label} is a new candidate, not the previous model: "
            "use `engagement-scorer model promote`"
        )
    if not rollback and shadow.id < state.active.id:
        raise RegistryError(
            f"the shadow {shadow.label} is the previous model: "
            "use `engagement-scorer model rollback`"
        )
    if not status.switch_done:
        raise RegistryError(
            f"the last switch is still going on ({status.cut_over()}/{status.partitions} "
            "partitions done); wait for it (`engagement-scorer model show`)"
        )
    if not status.shadow_ready:
        missing = sorted(set(range(status.partitions)) - status.engaged)
        raise RegistryError(
            f"the shadow {shadow.label} has not caught up yet: partitions {missing} are still "
            "replaying (`engagement-scorer model show`; or `promote --wait-ready SECONDS`)"
        )
    after = await registry.switch(state, at_ms=now_ms)
    return Switched(state, after)


async def wait_for(
    registry: ModelRegistry,
    done: Callable[[Status], bool],
    timeout_s: float,
    interval_s: float = 0.2,
) -> Status:
    """Poll the status until ``done`` holds or ``timeout_s`` passes; the last status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await read_status(registry)
        if done(status) or time.monotonic() >= deadline:
            return status
        await asyncio.sleep(interval_s)  # polling the registry, with a deadline


async def retire(
    registry: ModelRegistry, client: RedisClient, prefix: str, *, keep_data: bool
) -> tuple[ModelSlot, int]:
    """Stop scoring the shadow and (unless ``keep_data``) delete its keys; how many."""
    status = await read_status(registry)
    state = status.state
    if state is None:
        raise RegistryError("no model is registered yet")
    if not status.switch_done:
        raise RegistryError(
            f"the last switch is still going on ({status.cut_over()}/{status.partitions} "
            "partitions done): the model switched from is needed until it is done"
        )
    slot = await registry.retire(state)
    await client.delete(registry.keys.engaged(slot.id), registry.keys.progress(slot.id))
    if keep_data:
        return slot, 0
    await asyncio.sleep(RETIRE_GRACE_S)  # the workers notice within their poll interval
    return slot, await delete_namespace(client, slot.keys(prefix))


async def delete_namespace(client: RedisClient, keys: Keys) -> int:
    """``UNLINK`` every key of one model's namespace; how many (one key per command, in
    pipelines of 1,000: the keys of a namespace span every slot of a cluster)."""
    deleted = 0
    batch: list[bytes] = []

    async def flush() -> int:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.unlink(key)
        done = sum(int(n) for n in await pipe.execute())
        batch.clear()
        return done

    async for key in client.scan_iter(match=keys.all_pattern(), count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await flush()
    if batch:
        deleted += await flush()
    return deleted

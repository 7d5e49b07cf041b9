"""The model registry, the start-up check and the operator's steps, against a real Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from scoring import Event, apply, encode_state, load_default_model
from scoring.model import default_model_path
from stream_app.devkit.stack import LocalService
from stream_app.models import admin
from stream_app.models.registry import ModelRegistry, RegistryConflict, RegistryError
from stream_app.models.startup import ModelRefused, model_in_force
from stream_app.store.keys import Keys, RegistryKeys
from stream_app.store.records import encode_record
from stream_app.store.state import RedisClient, connect

T = TypeVar("T")

SHIPPED = default_model_path().read_text("utf-8")
V2_THRESHOLDS = SHIPPED.replace("version = 1", "version = 2").replace("warm = 20", "warm = 15")
V2_POINTS = SHIPPED.replace("version = 1", "version = 2").replace("points = 0.5", "points = 1")
OTHER_LAYOUT = SHIPPED.replace("hot = 60\n", "")  # two tiers: a hot customer's state cannot fit


def run(
    redis_server: LocalService, work: Callable[[RedisClient, ModelRegistry], Awaitable[T]],
    prefix: str,
) -> T:  # fmt: skip
    async def main() -> T:
        client = connect(redis_server.url)
        try:
            return await work(client, ModelRegistry(client, RegistryKeys(prefix)))
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_the_first_seed_wins_and_a_switch_swaps_the_models(
    redis_server: LocalService, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("reg")

    async def work(client: RedisClient, reg: ModelRegistry) -> None:
        assert await reg.read() is None
        first = await reg.seed(SHIPPED, origin="a.toml", partitions=4)
        again = await reg.seed(V2_POINTS, origin="b.toml", partitions=4)  # a second worker
        assert first == again and first.active.namespace == "default"
        assert (first.active.id, first.active.version, first.epoch, first.shadow) == (1, 1, 0, None)
        state = await reg.add_shadow(first, V2_POINTS, mode="replay", origin="v2.toml")
        assert state.shadow is not None and state.shadow.namespace == "default@2"
        assert await reg.engaged(2) == set()  # a replay engages partition by partition
        with pytest.raises(RegistryError, match="there is a shadow already"):
            await reg.add_shadow(state, V2_THRESHOLDS, mode="from-current", origin="x")
        with pytest.raises(RegistryConflict):
            await reg.add_shadow(first, V2_THRESHOLDS, mode="from-current", origin="x")
        switched = await reg.switch(state, at_ms=1234.5)
        assert (switched.active.id, switched.shadow.id, switched.epoch) == (2, 1, 1)  # type: ignore[union-attr]
        assert switched.switched_at_ms == 1234.5
        assert await reg.engaged(1) == {0, 1, 2, 3}  # the old model: everywhere, at once
        with pytest.raises(RegistryConflict):  # a second operator with what he read before
            await reg.switch(state, at_ms=9.0)
        retired = await reg.retire(switched)
        assert retired.id == 1 and (await reg.read()).shadow is None  # type: ignore[union-attr]

    run(redis_server, work, prefix)


def test_the_operator_steps_refuse_what_cannot_be_done_now(
    redis_server: LocalService, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("ops")

    async def work(client: RedisClient, reg: ModelRegistry) -> None:
        with pytest.raises(RegistryError, match="start a worker first"):
            await admin.add_shadow(reg, V2_POINTS, "v2.toml", from_current=False)
        await reg.seed(SHIPPED, origin="a.toml", partitions=2)
        with pytest.raises(RegistryError, match="is the model in force"):
            await admin.add_shadow(reg, SHIPPED, "same.toml", from_current=False)
        with pytest.raises(RegistryError, match="raise \\[model\\] version"):
            await admin.add_shadow(
                reg, SHIPPED.replace("warm = 20", "warm = 5"), "x", from_current=True
            )
        with pytest.raises(RegistryError, match=r"needs a replay because of: events\.web_visit"):
            await admin.add_shadow(reg, V2_POINTS, "v2.toml", from_current=True)
        with pytest.raises(RegistryError, match="no shadow"):
            await admin.switch(reg, rollback=False, now_ms=1.0)
        slot = await admin.add_shadow(reg, V2_POINTS, "v2.toml", from_current=False)
        with pytest.raises(RegistryError, match=r"not caught up yet: partitions \[0, 1\]"):
            await admin.switch(reg, rollback=False, now_ms=1.0)
        await reg.engage(slot.id, [0, 1])
        with pytest.raises(RegistryError, match="use `engagement-scorer model promote`"):
            await admin.switch(reg, rollback=True, now_ms=1.0)
        done = await admin.switch(reg, rollback=False, now_ms=1.0)
        assert done.after.active.id == slot.id
        with pytest.raises(RegistryError, match="still going on"):  # no worker switched yet
            await admin.switch(reg, rollback=True, now_ms=2.0)
        for p in (0, 1):
            await reg.mark_cutover(p, 1, 3)
        assert sum((await reg.switched(1)).values()) == 6
        back = await admin.switch(reg, rollback=True, now_ms=2.0)
        assert back.after.active.id == 1 and back.after.epoch == 2

    run(redis_server, work, prefix)


def test_a_model_that_cannot_read_the_stored_state_is_refused_at_start(
    redis_server: LocalService, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("refuse")
    model = load_default_model()
    hot = None
    for i in range(7):  # 70 points: hot
        hot = apply(hot, Event(f"e{i}", "c1", "webinar_attended", i, None), model).state
    assert hot is not None and hot.tier_name(model) == "hot"
    state = encode_state(hot)

    async def work(client: RedisClient, reg: ModelRegistry) -> None:
        await client.set(Keys(prefix, "default").state("c1"), encode_record(1, {"i0": 5}, state))
        with pytest.raises(ModelRefused) as refused:
            await model_in_force(client, prefix, file_text=OTHER_LAYOUT, origin="new.toml",
                                 partitions=2)  # fmt: skip
        message = str(refused.value)
        assert "cannot read the state stored under" in message
        assert "engagement-scorer model shadow NEW.toml" in message
        assert await reg.read() is None  # nothing registered
        seeded = await model_in_force(client, prefix, file_text=SHIPPED, origin="a.toml",
                                      partitions=2)  # fmt: skip
        assert seeded.active.sha256 == (await reg.read()).active.sha256  # type: ignore[union-attr]

    run(redis_server, work, prefix)


def test_a_worker_whose_file_disagrees_uses_the_model_in_force(
    redis_server: LocalService, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_name("disagree")

    async def work(client: RedisClient, reg: ModelRegistry) -> None:
        await reg.seed(SHIPPED, origin="a.toml", partitions=2)
        with caplog.at_level(logging.WARNING, logger="stream_app.models"):
            state = await model_in_force(client, prefix, file_text=V2_POINTS, origin="new.toml",
                                         partitions=2)  # fmt: skip
        assert state.active.version == 1
        assert "is not the model in force: scoring with default v1" in caplog.text

    run(redis_server, work, prefix)

"""A lane's store against a real Redis: the epoch mark, a later epoch seen, the replay's
claims, and a shadow derived from current state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from scoring import Event, apply, decode_state, encode_state, load_default_model
from scoring.migrate import derive
from scoring.model import default_model_path, parse_model_text
from stream_app.devkit.stack import LocalService
from stream_app.models.lanes import CLAIMED, Derivation, LaneStore, StaleEpoch, epoch_of
from stream_app.store.keys import Keys
from stream_app.store.records import Write
from stream_app.store.state import StateStore, connect

LOWER_WARM = parse_model_text(
    default_model_path().read_text("utf-8").replace("version = 1", "version = 2")
    .replace("warm = 20", "warm = 5"),
    "lower.toml",
)  # fmt: skip


def test_a_lane_marks_its_writes_sees_later_epochs_and_the_replay_leaves_claims(
    redis_server: LocalService, unique_name: Callable[[str], str]
) -> None:
    model = load_default_model()
    prefix = unique_name("lane")
    keys = Keys(prefix, "default@2")
    state = apply(None, Event("e1", "c1", "webinar_attended", 0, None), model).state
    epoch = [3]

    async def run() -> None:
        client = connect(redis_server.url)
        try:
            lane = LaneStore(client, keys, epoch=lambda: epoch[0])
            assert await lane.commit([Write("c1", 0, {"i0": 4}, encode_state(state))]) == []
            record = (await lane.load(["c1"]))["c1"]
            assert epoch_of(record) == 3 and record.marks["i0"] == 4
            epoch[0] = 2  # this worker has not seen the registry's epoch 3
            with pytest.raises(StaleEpoch):
                await lane.load(["c1"])
            replay = LaneStore(client, keys, claimed_by_workers=lambda cid: 1)
            claimed = (await replay.load(["c1"]))["c1"]
            assert claimed.marks == {"i1": CLAIMED, "r1": CLAIMED}  # every event looks applied
            other = StateStore(client, keys)
            await other.commit([Write("c2", 0, {"i0": 1}, encode_state(state))])
            assert (await replay.load(["c2"]))["c2"].marks == {"i0": 1}  # not claimed
        finally:
            await client.aclose()

    asyncio.run(run())


def test_a_shadow_from_current_state_derives_the_customers_it_has_not_written(
    redis_server: LocalService, unique_name: Callable[[str], str]
) -> None:
    model = load_default_model()
    prefix = unique_name("derive")
    active, shadow = Keys(prefix, "default"), Keys(prefix, "default@2")
    state = apply(None, Event("e1", "c1", "email_click", 0, None), model).state
    state = apply(state, Event("e2", "c1", "email_click", 1, None), model).state  # 6: cold

    async def run() -> None:
        client = connect(redis_server.url)
        try:
            source = StateStore(client, active)
            await source.commit([Write("c1", 0, {"i0": 9, "m": 0}, encode_state(state))])
            lane = LaneStore(client, shadow, derivation=Derivation(source, model, LOWER_WARM))
            got = await lane.load(["c1", "nobody"])
            record = got["c1"]
            assert record.version == 0 and record.marks == {"i0": 9, "m": 0}
            assert record.state is not None
            derived = decode_state(record.state, LOWER_WARM)
            assert derived == derive(state, model, LOWER_WARM)
            assert derived.tier_name(LOWER_WARM) == "warm"  # 6 >= 5
            assert got["nobody"].state is None
        finally:
            await client.aclose()

    asyncio.run(run())

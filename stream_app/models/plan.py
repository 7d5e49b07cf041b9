"""``engagement-scorer model plan NEW.toml``: read the retained input once, report the impact.

No writes anywhere, no output: the input topic is read from its earliest retained offset
to its end (:func:`stream_app.kafka.retained.read_retained`), folded offline under both
models (:class:`stream_app.models.whatif.Replay`), and compared with the states stored
for the model in force (read with ``SCAN`` and ``MGET``).
"""

from __future__ import annotations

import time
from typing import cast

from scoring import (
    CustomerState,
    InvalidState,
    Model,
    decode_state,
    parse_model_text,
)
from scoring.migrate import compare
from stream_app.errors import StreamAppError
from stream_app.kafka.auth import aiokafka_config
from stream_app.kafka.retained import read_retained
from stream_app.models.startup import in_force
from stream_app.models.whatif import Replay, WhatIf, summarize
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.state import RedisClient, StateStore, connect

#: Records read per ``MGET`` while scanning the stored states.
CHUNK = 1000


class PlanRefused(StreamAppError):
    """The new model cannot be planned as asked."""


async def stored_states(
    client: RedisClient, keys: Keys, model: Model, keep_explanations: set[str] | None = None
) -> tuple[dict[str, CustomerState], dict[str, bytes]]:
    """Every stored state of ``model`` (customer -> state), and the explanations of the
    customers in ``keep_explanations``."""
    states: dict[str, CustomerState] = {}
    explanations: dict[str, bytes] = {}
    store = StateStore(client, keys)
    batch: list[str] = []

    async def flush() -> None:
        for cid, record in (await store.load(batch)).items():  # (a cluster: MGET per slot)
            if record.state is None or record.fault is not None:
                continue
            try:
                states[cid] = decode_state(record.state, model)
            except InvalidState:
                continue  # a damaged record: the worker dead-letters its events
            if keep_explanations is not None and cid in keep_explanations and record.explain:
                explanations[cid] = record.explain
        batch.clear()

    async for key in client.scan_iter(match=keys.state_pattern(), count=CHUNK):
        batch.append(keys.customer_of(cast(bytes, key).decode()))
        if len(batch) >= CHUNK:
            await flush()
    if batch:
        await flush()
    return states, explanations


async def build_plan(
    settings: Settings,
    new_text: str,
    origin: str,
    *,
    from_current: bool = False,
    examples: int = 3,
    now_ms: float | None = None,
) -> WhatIf:
    """The what-if report of switching to the model in ``new_text``."""
    now = time.time() * 1000.0 if now_ms is None else now_ms
    new = parse_model_text(new_text, origin)
    client = connect(settings.redis_url)
    try:
        old, keys, label = await in_force(settings, client)
        comparison = compare(old, new)
        if from_current and not comparison.from_current:
            raise PlanRefused(
                f"{origin} cannot be derived from current state; it needs a replay because of: "
                + "; ".join(comparison.needs_replay)
            )
        mode = "from-current" if from_current else "replay"
        report = WhatIf(label, f"{new.name} v{new.version} ({origin})", mode, comparison, now)
        replay = Replay(
            old,
            None if from_current else new,
            now_ms=now,
            max_future_ms=int(settings.max_future_seconds * 1000),
            dedup=settings.dedup_memory,
        )
        async for message in read_retained(
            settings.broker_list, settings.input_topic, client_config=aiokafka_config(settings)
        ):
            replay.add(message.value, message.timestamp_ms)
        stored, explanations = await stored_states(client, keys, old, set(replay.sampled))
        return summarize(
            report,
            replay,
            stored,
            explanations,
            old=old,
            new=new,
            examples=examples,
        )
    finally:
        await client.aclose()

"""A replayed history gives the changes of one offline pass, while catching up and after."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from scoring import load_model
from stream_app.devkit.stack import LocalService
from stream_app.kafka.topics import prepare
from stream_app.settings import Settings
from tests.integration.decay.helpers import (
    MAX_LAG_MS,
    Tail,
    expected_doc,
    offline,
    offline_clashes,
    same,
    show,
    wait_published,
)
from tests.integration.workers import dumps, event, now_ms, start_worker, stop_all, unique
from tests.support.kafka import Out, in_offset_order, produce

pytestmark = pytest.mark.integration


def history(
    customers: Sequence[str], start: int, seconds: int, n: int, seed: int
) -> list[dict[str, Any]]:
    """``n`` events of ``customers`` on a 1-second grid (many equal times) over ``seconds``,
    in time order, with one event re-sent right after itself."""
    rng = random.Random(seed)
    kinds = ["webinar_attended"] * 4 + ["web_visit"] * 3 + ["email_unsubscribe"]
    raw = sorted(
        (start + rng.randrange(seconds) * 1000, rng.choice(customers), rng.choice(kinds))
        for _ in range(n)
    )
    docs = [event(f"h{i}-{cid}", cid, kind, ts) for i, (ts, cid, kind) in enumerate(raw)]
    j = rng.randrange(len(docs))
    return [*docs[: j + 1], docs[j], *docs[j + 1 :]]


def test_a_replayed_history_gives_the_changes_of_one_offline_pass(
    tansu: LocalService,
    redis_server: LocalService,
    tmp_path_factory: pytest.TempPathFactory,
    model_file: Path,
) -> None:
    """Three minutes of history (36 half-lives, up to now) are in the input before a fresh
    worker starts; it replays them in small batches with a 50 ms decay tick, so sweeps
    interleave with catching up and may fire only before the event-time progress, then
    up to the wall clock. The changes are exactly those of one offline pass (apply in
    offset order, then every crossing): those up to the last event while catching up,
    the later ones as the wall clock reaches them."""
    workdir = tmp_path_factory.mktemp("decay-replay")
    env = {
        "ENGAGEMENT_INPUT_TOPIC": unique("replay-in"),
        "ENGAGEMENT_OUTPUT_TOPIC": unique("replay-out"),
        "ENGAGEMENT_DLQ_TOPIC": unique("replay-dlq"),
        "ENGAGEMENT_PARTITIONS": "4",
        "ENGAGEMENT_BATCH_SIZE": "10",
        "ENGAGEMENT_DECAY_TICK_MS": "50",
        "ENGAGEMENT_LOG_LEVEL": "debug",  # each sweep that fires logs its firing lag
    }
    settings = Settings.from_env({**env, "ENGAGEMENT_KAFKA_BROKERS": tansu.url})
    asyncio.run(prepare(settings, timeout_s=30.0))
    customers = [unique(f"replay{i}") for i in range(8)]
    now = now_ms()
    docs = history(customers[:-1], now - 178_000, 178, 600, seed=4)
    # and a last burst (120 points): its crossings, 6 to 15 s later, come after catching up
    docs += [event(f"burst{j}", customers[-1], "webinar_attended", now) for j in range(12)]
    last_event = max(d["timestamp"] for d in docs)
    outs = [Out(dumps(d), d["customer_id"].encode()) for d in docs]
    sent = asyncio.run(produce(tansu.url, settings.input_topic, outs))
    want = offline(in_offset_order(docs, sent), load_model(model_file), now + 90_000, at_ms=now)
    all_want = [c for cid in customers for c in want.get(cid, [])]
    n_decay = sum(c.cause == "decay" for c in all_want)
    assert n_decay > 100, "the history should cross many bounds by decay"

    w = start_worker(tansu, redis_server, workdir, name="replay", model_file=model_file, **env)
    try:
        with Tail(w.brokers, w.settings.output_topic) as tail:
            history_part = {expected_doc(c) for c in all_want if c.occurred_at_ms <= last_event}
            published = wait_published(w, tail, customers, history_part, 30.0)
            caught_up = now_ms()  # the history is published: the worker is live from here
            last = max(c.occurred_at_ms for c in all_want)  # nothing crosses after this
            assert caught_up < last, "the worker caught up after the last crossing"
            expected = {expected_doc(c) for c in all_want}
            published = wait_published(w, tail, customers, expected, (last - now_ms()) / 1000 + 5)
    finally:
        stop_all([w])
    same(published.docs(last_event), history_part, "up to the last event")
    extra = published.docs() - {expected_doc(c) for c in all_want}
    assert not extra, f"published, not in the offline pass:\n{show(extra)}"
    assert not published.ids_with_two_contents() - offline_clashes(all_want)
    live = sorted(
        received - at
        for received, _, at, _, data in published.rows
        if data["cause"] == "decay" and at > caught_up
    )
    sweeps = [
        float(x) for x in re.findall(r"fired \d+ crossing\(s\).*lag (\d+) ms", w.log_tail(10**7))
    ]
    print(
        f"replay: {len(docs)} events over {(last_event - docs[0]['timestamp']) / 1000:.0f} s, "
        f"{len(history_part)} changes up to the last event ({n_decay} by decay in all), "
        f"{len(published.rows)} published, {published.duplicates()} duplicate(s); "
        f"{sum(lag > 5_000 for lag in sweeps)} of {len(sweeps)} sweeps that fired did so while "
        f"catching up (lag > 5 s); lag of the crossings fired live after catching up, ms: "
        f"{[round(x) for x in live]}"
    )
    assert live and live[-1] < MAX_LAG_MS

"""NPS counters per day, category and tier, each answer counted once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest

from scoring import nps
from stream_app.messages import expected_partition
from stream_app.store.state import StateStore, connect
from tests.integration.workers import DAY_MS, Worker, dumps, event, unique
from tests.support.fold import fold
from tests.support.kafka import Out

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- 5


async def _nps_counts(w: Worker) -> dict[str, int]:
    client = connect(w.settings.redis_url)
    try:
        return await StateStore(client, w.keys).nps_counts()
    finally:
        await client.aclose()


def test_nps_counts_per_day_category_and_tier(workers: dict[str, Worker]) -> None:
    w = workers["default"]
    tag = unique("nps")
    # days of their own: no other test of this module sends events on them
    d1 = int(datetime(2021, 3, 1, tzinfo=UTC).timestamp() * 1000)
    d2 = d1 + DAY_MS
    n1, n2, n3 = f"{tag}-1", f"{tag}-2", f"{tag}-3"
    nps_n3 = event(unique("e"), n3, "nps_response", d2 + 9 * 3_600_000 + 1000, score=7)
    keyed = [
        event(unique("e"), n1, "nps_response", d1 + 10 * 3_600_000, score=9),
        event(unique("e"), n3, "webinar_attended", d2 + 9 * 3_600_000),
        event(unique("e"), n3, "webinar_attended", d2 + 9 * 3_600_000),  # warm from here
        nps_n3,
        event(unique("e"), n1, "nps_response", d2 + 12 * 3_600_000, score=10),
    ]
    # n2's answer arrives on a partition that is not its customer's: re-keyed, counted once
    n2_doc = event(unique("e"), n2, "nps_response", d1 + 11 * 3_600_000, score=3)
    wrong = (expected_partition(n2, 4) + 1) % 4
    sent = w.produce(
        [Out(dumps(d), d["customer_id"].encode()) for d in keyed]
        + [Out(dumps(n2_doc), None, wrong)]
    )
    assert sent[-1].partition == wrong

    day1, day2 = "2021-03-01", "2021-03-02"
    expected = {
        f"{day1}|*|promoter": 1,
        f"{day1}|cold|promoter": 1,
        f"{day1}|*|detractor": 1,
        f"{day1}|cold|detractor": 1,
        f"{day2}|*|passive": 1,
        f"{day2}|warm|passive": 1,
        f"{day2}|*|promoter": 1,
        f"{day2}|cold|promoter": 1,
    }
    folded = fold((dumps(d) for d in [*keyed, n2_doc]), w.model)
    offline = Counter(
        f
        for cid in (n1, n2, n3)
        for day, tier, cat in folded[cid].nps
        for f in (f"{day}|*|{cat}", f"{day}|{tier}|{cat}")
    )
    assert offline == expected  # the hand count agrees with the core

    def ours() -> dict[str, int]:
        counts = asyncio.run(_nps_counts(w))
        return {k: v for k, v in counts.items() if k.startswith((day1, day2))}

    w.wait(lambda: ours() == expected, what=f"NPS counts {expected}, have {ours()}")

    # the same answer again (a duplicate event id) changes no count
    dup = w.produce([Out(dumps(nps_n3), n3.encode())])
    w.wait_processed({n3: dup[0]})
    assert w.state(n2) is not None
    assert ours() == expected
    by_cat = Counter[str]()
    for k, v in ours().items():
        if "|*|" in k:
            by_cat[k.rsplit("|", 1)[1]] += v
    assert nps(by_cat["promoter"], by_cat["passive"], by_cat["detractor"]) == 25
    n3_state = w.state(n3)
    assert n3_state is not None and n3_state.events_applied == 3

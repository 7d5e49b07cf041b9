"""The worker keeps the records it wrote last, decoded (stream_app.recordcache): it must
change no output, and a record that is not byte for byte what it wrote is decoded."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import orjson
import pytest

import scoring
from stream_app.pipeline import BatchProcessor, OutMessage, Record, Topics, expected_partition
from stream_app.recordcache import RecordCache
from stream_app.store import StoredRecord, Write

MODEL = scoring.load_default_model()
T0 = 1_700_000_000_000
PARTITIONS = 2
TYPES = sorted(MODEL.event_types)


class Records:
    """Fenced records, as Redis keeps them; ``lose`` makes the next write of a customer lose."""

    def __init__(self) -> None:
        self.records: dict[str, StoredRecord] = {}
        self.lose: set[str] = set()

    async def load(self, ids: Sequence[str]) -> dict[str, StoredRecord]:
        return {cid: self.records.get(cid, StoredRecord()) for cid in ids}

    async def commit(self, writes: Sequence[Write], **_: object) -> list[str]:
        lost = []
        for w in writes:
            current = self.records.get(w.customer_id, StoredRecord())
            if w.customer_id in self.lose or current.version != w.read_version:
                self.lose.discard(w.customer_id)
                lost.append(w.customer_id)
                continue
            self.records[w.customer_id] = StoredRecord(
                w.read_version + 1, dict(w.marks), w.state, w.explain
            )
        return lost


class Keep:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        self.sent.extend(m.value for m in messages)


def processor(store: Records, cache: int) -> BatchProcessor:
    return BatchProcessor(
        model=MODEL,
        topics=Topics("in", "in.by-customer", "out", "dlq", PARTITIONS),
        store=store,  # type: ignore[arg-type]
        publisher=Keep(),
        record_cache=cache,
        clock=lambda: (T0 + 30 * 86_400_000) / 1000,
    )


def traffic(seed: int, n: int, customers: int) -> list[list[Record]]:
    """Batches of random events (NPS answers included), keyed to their owner partition."""
    rng = random.Random(seed)
    offsets = [0] * PARTITIONS
    batches: list[list[Record]] = []
    for b in range(0, n, 25):
        batch = []
        for i in range(b, min(n, b + 25)):
            cid = f"c-{rng.randrange(customers)}"
            kind = rng.choice(TYPES)
            doc: dict[str, object] = {
                "event_id": f"e-{i}", "customer_id": cid, "type": kind,
                "timestamp": T0 + i * 60_000 + rng.randrange(-3_600_000, 0),
            }  # fmt: skip
            if kind == "nps_response":
                doc["properties"] = {"score": rng.randrange(11)}
            p = expected_partition(cid, PARTITIONS)
            batch.append(Record("in", p, offsets[p], cid.encode(), orjson.dumps(doc)))
            offsets[p] += 1
        batches.append(batch)
    return batches


def run(proc: BatchProcessor, batches: Sequence[Sequence[Record]]) -> None:
    async def main() -> None:
        for batch in batches:
            await proc.process(batch)

    asyncio.run(main())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_outputs_and_stored_records_are_the_same_with_and_without_the_cache(seed: int) -> None:
    batches = traffic(seed, 1500, customers=40)
    plain_store, cached_store = Records(), Records()
    plain, cached = processor(plain_store, cache=0), processor(cached_store, cache=1000)
    run(plain, batches)
    run(cached, batches)
    assert cached.publisher.sent == plain.publisher.sent  # type: ignore[attr-defined]
    assert cached_store.records == plain_store.records
    assert plain.records.hits == 0 and len(plain.records) == 0
    assert cached.records.hits > 1000  # (customers come back: most reads were hits)


def test_a_record_someone_else_wrote_is_decoded_not_taken_from_the_cache() -> None:
    store = Records()
    proc = processor(store, cache=1000)
    batches = traffic(4, 200, customers=3)
    run(proc, batches[:4])
    cid = next(iter(store.records))
    mine = store.records[cid]
    assert proc.records.get(cid, mine.state or b"", mine.explain) is not None
    # another worker (after a rebalance) applied one more event to this customer
    other = processor(store, cache=0)
    doc = {"event_id": "other-1", "customer_id": cid, "type": TYPES[0], "timestamp": T0}
    p = expected_partition(cid, PARTITIONS)
    run(other, [[Record("in.by-customer", p, 0, cid.encode(), orjson.dumps(doc))]])
    assert store.records[cid].state != mine.state
    misses = proc.records.misses
    # from here on, the cached processor must agree with one that decodes everything
    twin_store = Records()
    twin_store.records = dict(store.records)
    twin = processor(twin_store, cache=0)
    run(proc, batches[4:])
    run(twin, batches[4:])
    assert proc.records.misses > misses
    assert store.records == twin_store.records
    assert proc.publisher.sent[-len(twin.publisher.sent) :] == twin.publisher.sent  # type: ignore[attr-defined]


def test_a_lost_write_is_not_remembered_and_a_rebalance_forgets_everything() -> None:
    store = Records()
    proc = processor(store, cache=1000)
    batches = traffic(5, 100, customers=5)
    run(proc, batches[:2])
    assert len(proc.records) > 0
    cid = next(iter(store.records))
    store.lose.add(cid)  # its next write loses once, then the re-read wins
    doc = {"event_id": "x-1", "customer_id": cid, "type": "email_open", "timestamp": T0}
    p = expected_partition(cid, PARTITIONS)
    run(proc, [[Record("in", p, 10_000, cid.encode(), orjson.dumps(doc))]])
    stored = store.records[cid]
    assert proc.records.get(cid, stored.state or b"", stored.explain) is not None
    proc.forget([0, 1])
    assert len(proc.records) == 0


def test_the_least_recently_used_customer_goes_first() -> None:
    cache = RecordCache(capacity=2)
    state = scoring.CustomerState(clock_ms=1.0)
    cache.put("a", b"A", state, None, None)
    cache.put("b", b"B", state, b"x", None)
    assert cache.get("a", b"A", None) is not None  # a is now the most recently used
    cache.put("c", b"C", state, None, None)
    assert cache.get("b", b"B", b"x") is None
    assert cache.get("a", b"A", None) is not None and cache.get("c", b"C", None) is not None
    assert cache.get("a", b"A", b"other explanation") is None  # both parts must match
    with pytest.raises(ValueError, match="capacity"):
        RecordCache(capacity=-1)
    off = RecordCache(capacity=0)
    off.put("a", b"A", state, None, None)
    assert len(off) == 0

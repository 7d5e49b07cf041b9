"""The workloads: the pre-produced throughput workload, the latency phase's live traffic."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from e2e.config import DAY_MS, Config
from stream_app.devkit import simulator


def _type_table(persona: simulator.Persona) -> tuple[list[str], list[float]]:
    """A persona's event types and cumulative weights (its daily rates, one-offs included)."""
    rates = list(persona.rates)
    if persona.loyalty_join_within_days is not None:
        rates.append(("loyalty_join", 0.005))
    if persona.unsubscribe_per_day:
        rates.append(("email_unsubscribe", persona.unsubscribe_per_day))
    return [t for t, _ in rates], list(itertools.accumulate(r for _, r in rates))


@dataclass
class Workload:
    messages: list[tuple[bytes, bytes]]
    per_customer: Counter[str]
    types: Counter[str]


def throughput_workload(cfg: Config, now_ms: int) -> Workload:
    """``cfg.events`` valid events, customers zipf-chosen, event time over the last 30 days.

    Customer ``cust-NNNNNN`` has a simulator persona; its event types are drawn from that
    persona's rates, properties as the simulator writes them. Rank -> customer is a seeded
    permutation, so the busiest customers are spread over the partitions.
    """
    rng = random.Random(f"bench:{cfg.seed}")
    mix = simulator.DEFAULT_MIX
    names = sorted(mix)
    chosen = rng.choices(names, weights=[mix[n] for n in names], k=cfg.customers)
    personas = [simulator.PERSONAS[n] for n in chosen]
    tables = {n: _type_table(simulator.PERSONAS[n]) for n in names}
    ranked = list(range(cfg.customers))
    rng.shuffle(ranked)
    cum = list(itertools.accumulate(k**-cfg.zipf for k in range(1, cfg.customers + 1)))
    picks = rng.choices(ranked, cum_weights=cum, k=cfg.events)
    start, end = now_ms - 30 * DAY_MS, now_ms - 60_000
    stamps = sorted(rng.randrange(start, end) for _ in range(cfg.events))
    messages: list[tuple[bytes, bytes]] = []
    per_customer: Counter[str] = Counter()
    types: Counter[str] = Counter()
    for n, (idx, ts) in enumerate(zip(picks, stamps, strict=True)):
        persona = personas[idx]
        kinds, weights = tables[persona.name]
        etype = rng.choices(kinds, cum_weights=weights)[0]
        cid = f"cust-{idx:06d}"
        doc = {
            "event_id": f"bench-{cfg.seed}-{n}",
            "customer_id": cid,
            "type": etype,
            "timestamp": ts,
            "properties": simulator._properties(rng, persona, etype),
        }
        messages.append((cid.encode(), orjson.dumps(doc)))
        per_customer[cid] += 1
        types[etype] += 1
    return Workload(messages, per_customer, types)


class LatencyTraffic:
    """Live events for the latency phase: about half are NPS answers that flip a customer
    between promoter and detractor, so they change segments (advocate, detractor_at_risk);
    the rest follow the customers' personas (and cross the warm threshold in time)."""

    def __init__(self, customers: int, seed: int) -> None:
        self.rng = random.Random(f"bench-latency:{seed}")
        mix = simulator.DEFAULT_MIX
        names = sorted(mix)
        chosen = self.rng.choices(names, weights=[mix[n] for n in names], k=customers)
        self.personas = [simulator.PERSONAS[n] for n in chosen]
        self.tables = {n: _type_table(simulator.PERSONAS[n]) for n in names}
        self.flips = [i % 2 == 0 for i in range(customers)]
        self.run = uuid.uuid4().hex[:8]
        self.n = 0

    def next(self, prefix: str) -> tuple[str, bytes, bytes]:
        """(event id, key, value) of the next event, its timestamp now."""
        rng = self.rng
        idx = rng.randrange(len(self.personas))
        persona = self.personas[idx]
        if rng.random() < 0.5:
            etype, props = "nps_response", {"score": 10 if self.flips[idx] else 0}
            self.flips[idx] = not self.flips[idx]
        else:
            kinds, weights = self.tables[persona.name]
            etype = rng.choices(kinds, cum_weights=weights)[0]
            props = simulator._properties(rng, persona, etype)
        self.n += 1
        event_id = f"{prefix}-{self.run}-{self.n}"
        cid = f"lat-{idx:05d}"
        doc = {
            "event_id": event_id,
            "customer_id": cid,
            "type": etype,
            "timestamp": int(time.time() * 1000),
            "properties": props,
        }
        return event_id, cid.encode(), orjson.dumps(doc)


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> float:
    """Send ``(key, value)`` messages, keyed (murmur2 partitioner); seconds it took."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    began = time.perf_counter()
    try:
        for i in range(0, len(messages), 5000):
            chunk = messages[i : i + 5000]
            futures = [await producer.send(topic, v, key=k) for k, v in chunk]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - began

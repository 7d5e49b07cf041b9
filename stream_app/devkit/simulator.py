"""Seeded, deterministic simulator of realistic interaction events (pure: no Kafka or Redis).

Each customer follows a :class:`Persona`: daily Poisson rates per event type, scaled by a
long-tailed per-customer activity and a shape over time (steady, lapsing, warming up), plus
one-off events (loyalty sign-up, unsubscribe) and bursts. Same :class:`SimConfig`, same events.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import operator
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any, Literal, TypeVar

import orjson

from stream_app.errors import StreamAppError


class SimulationError(StreamAppError, ValueError):
    """A simulation asked for with values that make no sense."""


SimEvent = dict[str, Any]
T = TypeVar("T")

DAY_MS = 86_400_000
LAPSE_HALF_LIFE_MS = 5 * DAY_MS  # a lapsing customer's activity halves every 5 days ...
LAPSE_FLOOR = 1 / 32  # ... and stops altogether below 1/32 (about 25 days after lapsing)
RAMP_MS = 21 * DAY_MS  # a new customer reaches full activity three weeks after joining
LIVE_REFRESH_MS = 60_000  # live mode re-evaluates customers' activity once a minute
_TIMESTAMP = operator.itemgetter("timestamp")

EVENT_TYPES: tuple[str, ...] = (
    "email_open", "email_click", "email_unsubscribe", "content_download", "webinar_attended",
    "loyalty_join", "loyalty_earn", "loyalty_redeem", "survey_completed", "review_submitted",
    "nps_response", "contest_entry", "web_visit", "social_share",
)  # fmt: skip


@dataclass(frozen=True)
class Persona:
    """How one kind of customer behaves; ``rates`` are events per day at full activity."""

    name: str
    rates: tuple[tuple[str, float], ...]
    shape: Literal["steady", "lapse", "ramp"] = "steady"
    nps: tuple[int, int] = (7, 8)  # range of NPS scores (and review ratings derived from it)
    unsubscribe_per_day: float = 0.0  # hazard of a one-off email_unsubscribe (then silence)
    loyalty_join_within_days: float | None = None  # one loyalty_join soon after becoming active
    burst_types: tuple[str, ...] = ()  # on a burst day these types run burst_mult times faster
    burst_prob: float = 0.0
    burst_mult: float = 1.0


PERSONAS: Mapping[str, Persona] = MappingProxyType({p.name: p for p in (
    Persona("loyal_promoter", (
        ("email_open", 0.12), ("email_click", 0.05), ("loyalty_earn", 0.08),
        ("loyalty_redeem", 0.02), ("web_visit", 0.06), ("nps_response", 0.01),
        ("review_submitted", 0.005), ("survey_completed", 0.005)), nps=(9, 10)),
    Persona("lapsing", (
        ("email_open", 0.15), ("email_click", 0.05), ("web_visit", 0.12),
        ("content_download", 0.03), ("loyalty_earn", 0.04), ("webinar_attended", 0.01),
        ("nps_response", 0.005)), shape="lapse", nps=(5, 8)),
    Persona("newsletter_reader", (("email_open", 0.2), ("email_click", 0.05)),
            unsubscribe_per_day=0.006),
    Persona("web_active_loyalty_ignorer", (
        ("web_visit", 0.3), ("content_download", 0.06), ("webinar_attended", 0.01),
        ("social_share", 0.01)), loyalty_join_within_days=3.0),
    Persona("detractor", (
        ("web_visit", 0.04), ("email_open", 0.04), ("nps_response", 0.015),
        ("survey_completed", 0.005), ("review_submitted", 0.005)), nps=(0, 6),
            unsubscribe_per_day=0.008),
    Persona("new_customer", (
        ("web_visit", 0.12), ("email_open", 0.1), ("email_click", 0.04),
        ("content_download", 0.02), ("loyalty_earn", 0.04), ("nps_response", 0.005)),
            shape="ramp", nps=(7, 10), loyalty_join_within_days=10.0),
    Persona("bargain_hunter", (
        ("contest_entry", 0.08), ("social_share", 0.05), ("loyalty_earn", 0.03),
        ("loyalty_redeem", 0.02), ("web_visit", 0.06), ("email_click", 0.03)),
            nps=(6, 9), loyalty_join_within_days=30.0,
            burst_types=("loyalty_redeem", "contest_entry"), burst_prob=0.05, burst_mult=15.0),
)})  # fmt: skip

DEFAULT_MIX: Mapping[str, float] = MappingProxyType({
    "loyal_promoter": 0.15, "lapsing": 0.15, "newsletter_reader": 0.2,
    "web_active_loyalty_ignorer": 0.15, "detractor": 0.1, "new_customer": 0.15,
    "bargain_hunter": 0.1,
})  # fmt: skip


@dataclass(frozen=True)
class SimConfig:
    """What to simulate: how many customers, the seed, the window [start_ms, end_ms], the mix."""

    customers: int = 200
    seed: int = 42
    start_ms: int = field(kw_only=True)
    end_ms: int = field(kw_only=True)
    mix: Mapping[str, float] = field(default_factory=lambda: DEFAULT_MIX, hash=False)

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise SimulationError(f"customers: must be at least 1, got {self.customers}")
        if self.end_ms <= self.start_ms:
            raise SimulationError("end_ms: must be after start_ms")
        ok = set(self.mix) <= set(PERSONAS) and all(0 <= w < math.inf for w in self.mix.values())
        if not (ok and any(self.mix.values())):
            raise SimulationError(f"mix: weights >= 0, not all 0, of personas {sorted(PERSONAS)}")
        object.__setattr__(self, "mix", MappingProxyType(dict(self.mix)))

    @classmethod
    def ending(cls, end_ms: int, days: float = 90.0, **kwargs: Any) -> SimConfig:
        """The window of ``days`` days that ends at ``end_ms`` (other fields as keywords)."""
        return cls(start_ms=end_ms - round(days * DAY_MS), end_ms=end_ms, **kwargs)


@dataclass(frozen=True)
class _Customer:
    customer_id: str
    persona: Persona
    activity: float  # multiplies every rate; log-normal, so a few customers are very active
    active_from: int
    lapse_at: int | None
    unsub_at: int | None
    loyalty_join_at: int | None


def _customer(config: SimConfig, idx: int) -> _Customer:
    rng = random.Random(f"sim:{config.seed}:{idx}:profile")
    names = sorted(config.mix)
    persona = PERSONAS[rng.choices(names, weights=[config.mix[n] for n in names])[0]]
    span = config.end_ms - config.start_ms
    activity = min(8.0, rng.lognormvariate(0.0, 0.9))
    shape, hazard = persona.shape, persona.unsubscribe_per_day
    join = persona.loyalty_join_within_days
    active_from = config.start_ms + (int(rng.uniform(0.3, 0.7) * span) if shape == "ramp" else 0)
    lapse_at = config.start_ms + int(rng.uniform(0.15, 0.35) * span) if shape == "lapse" else None
    unsub_at = active_from + int(rng.expovariate(hazard) * DAY_MS) if hazard else None
    join_at = None if join is None else active_from + int(rng.uniform(0, join) * DAY_MS)
    cid = f"cust-{idx:06d}"
    return _Customer(cid, persona, activity, active_from, lapse_at, unsub_at, join_at)


def _envelope(c: _Customer, t: int) -> float:
    """The customer's activity factor (0..1) at time ``t``, from its persona's shape."""
    if t < c.active_from:
        return 0.0
    if c.lapse_at is not None and t > c.lapse_at:
        f = 0.5 ** ((t - c.lapse_at) / LAPSE_HALF_LIFE_MS)
        return f if f >= LAPSE_FLOOR else 0.0
    if c.persona.shape == "ramp":
        return min(1.0, 0.1 + 0.9 * (t - c.active_from) / RAMP_MS)
    return 1.0


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rng.random()  # Knuth: fine for the small rates here
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _ids(fmt: str, n: int) -> tuple[str, ...]:
    return tuple(fmt.format(i) for i in range(1, n + 1))


_CAMPAIGNS = _ids("cmp-{:03d}", 40)
_PROPS: Mapping[str, tuple[tuple[str, tuple[Any, ...]], ...]] = {  # key -> options to pick from
    "email_open": (("campaign_id", _CAMPAIGNS),),
    "email_click": (("campaign_id", _CAMPAIGNS), ("url", _ids("/offers/{}", 25))),
    "email_unsubscribe": (("list", ("newsletter", "offers")),),
    "content_download": (("asset", _ids("whitepaper-{}", 12) + _ids("ebook-{}", 6)),),
    "webinar_attended": (("webinar_id", _ids("web-{}", 10)), ("minutes", tuple(range(5, 61)))),
    "loyalty_join": (("program", ("rewards",)), ("channel", ("web", "store", "app"))),
    "loyalty_earn": (("points", (10, 25, 50, 100)),),
    "loyalty_redeem": (("points", (100, 200, 500)), ("reward", ("voucher", "discount", "gift"))),
    "survey_completed": (("survey_id", _ids("srv-{}", 6)),),
    "review_submitted": (("product_id", _ids("sku-{}", 80)),),
    "nps_response": (),
    "contest_entry": (("contest_id", _ids("contest-{}", 8)),),
    "web_visit": (("url", ("/", "/pricing", "/blog", "/products", "/support", "/docs")),
                  ("seconds", tuple(range(5, 601)))),
    "social_share": (("network", ("x", "facebook", "linkedin")),),
}  # fmt: skip


def _properties(rng: random.Random, persona: Persona, etype: str) -> dict[str, Any]:
    props = {key: rng.choice(options) for key, options in _PROPS[etype]}
    if etype == "nps_response":
        props["score"] = rng.randint(*persona.nps)
    elif etype == "review_submitted":  # 1-5 stars, in line with the persona's NPS range
        props["rating"] = 1 + rng.randint(*persona.nps) * 4 // 10
    return props


def _event(rng: random.Random, c: _Customer, etype: str, ts: int) -> SimEvent:
    props = _properties(rng, c.persona, etype)  # the caller sets event_id once it knows it
    return {"event_id": "", "customer_id": c.customer_id, "type": etype, "timestamp": ts,
            "properties": props}  # fmt: skip


def _customer_stream(config: SimConfig, c: _Customer) -> Iterator[SimEvent]:
    """One customer's events in [start_ms, end_ms], in time order, generated day by day."""
    rng = random.Random(f"sim:{config.seed}:{c.customer_id}:events")
    p = c.persona
    stop = config.end_ms if c.unsub_at is None else min(config.end_ms, c.unsub_at)
    one_offs = ((c.loyalty_join_at, "loyalty_join"), (c.unsub_at, "email_unsubscribe"))
    lo = c.active_from
    while lo <= stop:
        hi = min(lo + DAY_MS, stop + 1)
        scale = c.activity * _envelope(c, (lo + hi) // 2) * (hi - lo) / DAY_MS
        burst = p.burst_mult if p.burst_types and rng.random() < p.burst_prob else 1.0
        day: list[SimEvent] = []
        for etype, rate in p.rates if scale > 0 else ():
            lam = rate * scale * (burst if etype in p.burst_types else 1.0)
            day.extend(
                _event(rng, c, etype, rng.randrange(lo, hi)) for _ in range(_poisson(rng, lam))
            )
        day.extend(_event(rng, c, e, t) for t, e in one_offs if t is not None and lo <= t < hi)
        day.sort(key=_TIMESTAMP)
        yield from day
        lo = hi


def _customers(config: SimConfig) -> list[_Customer]:
    return [_customer(config, i) for i in range(config.customers)]


def personas(config: SimConfig) -> dict[str, str]:
    """customer_id -> persona name, for every simulated customer."""
    return {c.customer_id: c.persona.name for c in _customers(config)}


def history(config: SimConfig) -> Iterator[SimEvent]:
    """All events of all customers in [start_ms, end_ms], in timestamp order; ids sim-{seed}-{n}.

    Per-customer streams are merged lazily: memory grows with customers, not with events."""
    streams = [_customer_stream(config, c) for c in _customers(config)]
    for n, event in enumerate(heapq.merge(*streams, key=_TIMESTAMP)):
        event["event_id"] = f"sim-{config.seed}-{n}"
        yield event


def take_events(config: SimConfig, n: int) -> list[SimEvent]:
    """The first ``n`` events of :func:`history`."""
    return list(itertools.islice(history(config), n))


def _live_weight(c: _Customer, now: int, gone: set[str]) -> float:
    return (
        0.0
        if c.customer_id in gone
        else c.activity * _envelope(c, now) * sum(r for _, r in c.persona.rates)
    )


def live(
    config: SimConfig, *, rate: float, clock: Callable[[], float] = time.time
) -> Iterator[SimEvent]:
    """Endless events happening now (timestamp = ``clock()`` in ms when each is generated).

    Customers are picked in proportion to persona rate x activity x shape at ``clock()``: the
    lapsed stay quiet, newcomers warm up, the unsubscribed stay silent, some unsubscribe now.
    Never sleeps: pull at ``rate`` events/s, e.g. via :func:`paced`. Ids: sim-{seed}-live-{t0}-{n}.
    """
    if not (math.isfinite(rate) and rate > 0):
        raise SimulationError(f"rate: must be a positive number of events per second, got {rate}")
    customers = _customers(config)
    gone = {c.customer_id for c in customers if c.unsub_at and c.unsub_at <= config.end_ms}
    rng = random.Random(f"sim:{config.seed}:live")
    t0 = int(clock() * 1000)
    cum, refreshed = [0.0], -math.inf
    for n in itertools.count():
        now = int(clock() * 1000)
        if now - refreshed >= LIVE_REFRESH_MS:
            refreshed = now
            cum = list(itertools.accumulate(_live_weight(c, now, gone) for c in customers))
            if not cum[-1] > 0:  # everyone lapsed or left: keep the stream going regardless
                cum = list(itertools.accumulate(c.activity for c in customers))
        c = rng.choices(customers, cum_weights=cum)[0]
        rates = c.persona.rates
        if c.persona.unsubscribe_per_day and c.customer_id not in gone:
            rates += (("email_unsubscribe", c.persona.unsubscribe_per_day),)
        etype = rng.choices([t for t, _ in rates], weights=[w for _, w in rates])[0]
        if etype == "email_unsubscribe":
            gone.add(c.customer_id)
            refreshed = -math.inf
        event = _event(rng, c, etype, now)
        event["event_id"] = f"sim-{config.seed}-live-{t0}-{n}"
        yield event


async def paced(it: Iterable[T], rate: float) -> AsyncIterator[T]:
    """Yield the items of ``it`` at about ``rate`` per second, pulling each one when it is due."""
    if not (math.isfinite(rate) and rate > 0):
        raise SimulationError(f"rate: must be a positive number of events per second, got {rate}")
    loop = asyncio.get_running_loop()
    source = iter(it)
    start = loop.time()
    for n in itertools.count():
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:  # the consumer fell behind: no catch-up burst
            start = loop.time() - n / rate
        try:
            item = next(source)
        except StopIteration:
            return
        yield item


def write_jsonl(events: Iterable[SimEvent], fp: IO[bytes]) -> int:
    """Write one JSON object per line; returns how many events were written."""
    count = 0
    for event in events:
        fp.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        count += 1
    return count


def read_jsonl(fp: Iterable[bytes]) -> Iterator[bytes]:
    """The raw (stripped) lines of a JSON-lines file, skipping blank lines."""
    yield from filter(None, (line.strip() for line in fp))


def inject_duplicates_and_disorder(
    events: Iterable[SimEvent], *, duplicate_rate: float, disorder_rate: float, seed: int
) -> list[SimEvent]:
    """Test helper: follow some events by a copy (same ``event_id``), then swap some neighbours."""
    if not (0.0 <= duplicate_rate <= 1.0 and 0.0 <= disorder_rate <= 1.0):
        raise SimulationError("duplicate_rate, disorder_rate: must be between 0 and 1")
    rng = random.Random(f"sim:disorder:{seed}")
    out: list[SimEvent] = []
    for event in events:
        out.append(event)
        if rng.random() < duplicate_rate:
            out.append({**event, "properties": dict(event.get("properties") or {})})
    for i in range(len(out) - 1):
        if rng.random() < disorder_rate:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out

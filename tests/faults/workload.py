"""What the scenarios feed: seeded simulated events with duplicates and disorder, hostile
messages that must all be dead-lettered, and ways to cut and mix them."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson

from scoring import InvalidEvent, load_model, parse_event
from stream_app.devkit.simulator import SimConfig, history, inject_duplicates_and_disorder
from stream_app.settings import Settings
from tests.faults.config import DAY_MS, MIB, WORKLOAD_END_MS, Config, now_ms
from tests.support.kafka import Out

T = TypeVar("T")


def valid_events(cfg: Config) -> list[dict[str, Any]]:
    """``cfg.events`` simulated events (duplicates included) over about ``cfg.customers``.

    The history of a 120-day window ending at :data:`WORKLOAD_END_MS` is subsampled uniformly
    (keeping time order) so that every customer's whole life is in it, then duplicates and
    disorder are injected. Same seed and sizes, same events, whenever it runs."""
    base = max(1, round(cfg.events / (1 + cfg.duplicate_rate)))
    days = 120.0
    end = min(WORKLOAD_END_MS, now_ms() - DAY_MS)
    while True:
        sim = SimConfig.ending(end, days, customers=cfg.customers, seed=cfg.seed)
        full = list(history(sim))
        if len(full) >= base:
            break
        days *= 2
    rng = random.Random(f"faults:{cfg.seed}:subsample")
    keep = sorted(rng.sample(range(len(full)), base))
    events = [full[i] for i in keep]
    out = inject_duplicates_and_disorder(
        events, duplicate_rate=cfg.duplicate_rate, disorder_rate=cfg.disorder_rate, seed=cfg.seed
    )
    return out[: cfg.events] if len(out) > cfg.events else out


def as_out(doc: dict[str, Any]) -> Out:
    return Out(orjson.dumps(doc), doc["customer_id"].encode())


def _event_bytes(**fields: Any) -> bytes:
    doc = {
        "event_id": "h",
        "customer_id": "hc",
        "type": "web_visit",
        "timestamp": 1_600_000_000_000,
    }
    doc.update(fields)
    return orjson.dumps({k: v for k, v in doc.items() if v is not _DROP})


_DROP = object()


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def hostile_messages(n: int, seed: int, *, big: bool) -> list[tuple[str, Out]]:  # noqa: C901
    """``n`` messages that must all be dead-lettered, of many kinds (kind name, message).

    ``big`` adds 1 MiB messages and ~200 KB random blobs (a few, bounded), and ~60 KB
    strings; without it every message stays under a few KB."""
    rng = random.Random(f"faults:{seed}:hostile")
    now = now_ms()

    def wrong_types() -> bytes:
        return rng.choice(
            [
                _event_bytes(event_id=12345),
                _event_bytes(event_id=""),
                _event_bytes(type=5),
                _event_bytes(properties=[1, 2]),
                _event_bytes(properties="x"),
                _event_bytes(timestamp="yesterday"),
                _event_bytes(timestamp=1.5),
                _event_bytes(timestamp=True),
                _event_bytes(timestamp=None),
                _event_bytes(customer_id=42),
                _event_bytes(customer_id=None),
                _event_bytes(customer_id=["a"]),
            ]
        )

    def nan_inf() -> bytes:
        base = b'{"event_id":"h","customer_id":"hc","type":"nps_response","timestamp":'
        return rng.choice(
            [
                base + b"NaN}",
                base + b"Infinity}",
                base + b"-Infinity}",
                base + b"1e999}",
                base + b'1600000000000,"properties":{"score":NaN}}',
                base + b'1600000000000,"properties":{"score":1e400}}',
            ]
        )

    def negative_ts() -> bytes:
        return _event_bytes(
            timestamp=rng.choice([-1, -86_400_000, -(2**62), "1969-12-31T23:59:59Z"])
        )

    def future_ts() -> bytes:
        return _event_bytes(
            timestamp=rng.choice(
                [
                    now + 2 * DAY_MS,
                    now + 3650 * DAY_MS,
                    "9999-12-31T23:59:59Z",
                    "10000-01-01T00:00:00Z",
                    2**63 - 1,
                ]
            )
        )

    def unknown_type() -> bytes:
        return _event_bytes(type=rng.choice(["purchase", "", "WEB_VISIT", "web_visit ", "\x00"]))

    def nps_bad() -> bytes:
        score = rng.choice([11, -1, 10.5, "9", None, 1000, True])
        props: Any = _DROP if score is None else {"score": score}
        return _event_bytes(type="nps_response", properties=props)

    def control_ids() -> bytes:
        cid = rng.choice(["cust\x00001", "cust\n1", "cust\t1", "cust\x7f", "cu st", "c\u200b1", ""])
        return _event_bytes(customer_id=cid)

    def not_object() -> bytes:
        return rng.choice([b"[]", b'"a string"', b"42", b"null", b"true", b"[1,2,3]"])

    def missing_field() -> bytes:
        name = rng.choice(["event_id", "customer_id", "type", "timestamp"])
        return _event_bytes(**{name: _DROP})

    def truncated() -> bytes:
        full = _event_bytes(event_id=f"t-{rng.random()}", properties={"url": "/pricing"})
        return full[: rng.randint(1, len(full) - 1)]

    def deep() -> bytes:
        if rng.random() < 0.5:
            d = rng.randint(1100, 3000)
            return b"[" * d + b"]" * d
        return (
            b'{"event_id":"h","customer_id":'
            + _nested(rng.randint(200, 900))
            + b',"type":"web_visit","timestamp":1600000000000}'
        )

    kinds: list[tuple[str, Callable[[], bytes | None]]] = [
        ("random_bytes", lambda: rng.randbytes(rng.randint(1, 300))),
        ("truncated_json", truncated),
        ("deep_nesting", deep),
        ("wrong_types", wrong_types),
        ("nan_infinity", nan_inf),
        ("negative_timestamp", negative_ts),
        ("future_timestamp", future_ts),
        ("unknown_type", unknown_type),
        ("bad_nps", nps_bad),
        ("control_chars_in_id", control_ids),
        ("not_object", not_object),
        ("missing_field", missing_field),
        ("empty", lambda: b""),
        ("tombstone", lambda: None),
    ]
    fixed: list[tuple[str, Callable[[], bytes | None]]] = []
    if big:
        pad = b'{"event_id":"big","customer_id":"hc","type":"web_visit","timestamp":1,"pad":"'
        one_mib = pad + b"x" * (MIB - len(pad) - 2) + b'"}'
        fixed += [("1mib_message", lambda: one_mib)] * min(20, max(2, n // 5000))
        fixed += [("200kb_random", lambda: rng.randbytes(200_000))] * min(20, max(1, n // 5000))
        fixed += [("huge_string_id", lambda: _event_bytes(customer_id="x" * 60_000))] * min(
            200, max(2, n // 500)
        )
        fixed += [("huge_event_id", lambda: _event_bytes(event_id="e" * 70_000))] * min(
            200, max(2, n // 500)
        )
    out: list[tuple[str, Out]] = []
    for i in range(n):
        if i < len(fixed):
            name, make = fixed[i]
        else:
            name, make = kinds[i % len(kinds)]
        value = make()
        r = rng.random()
        key: bytes | None = (
            None if r < 0.4 else (rng.randbytes(8) if r < 0.6 else f"hc-{i}".encode())
        )
        if value is None and key is None:
            key = f"tomb-{i}".encode()  # a tombstone needs a key
        out.append((name, Out(value, key)))  # type: ignore[arg-type]
    rng.shuffle(out)
    return out


def interleave(valid: Sequence[Out], hostile: Sequence[Out], seed: int) -> list[Out]:
    """Both lists merged at random positions, each keeping its own order."""
    rng = random.Random(f"faults:{seed}:interleave")
    total = len(valid) + len(hostile)
    spots = set(rng.sample(range(total), len(hostile)))
    v, h = iter(valid), iter(hostile)
    return [next(h) if i in spots else next(v) for i in range(total)]


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    size = math.ceil(len(items) / parts)
    return [list(items[i * size : (i + 1) * size]) for i in range(parts)]


def tail_split(items: Sequence[T]) -> tuple[list[T], list[T]]:
    """``items`` as (most of them, a short tail): the tail is fed after a fault, so that every
    partition has work to show the recovery with."""
    t = min(len(items) // 2, max(60, len(items) // 20))
    return list(items[: len(items) - t]), list(items[len(items) - t :])


def raw_of(value: bytes | None) -> bytes:
    """What the worker parses for a message value (a tombstone has no bytes)."""
    return b"" if value is None else value


def make_workload(cfg: Config, *, hostile: int, big: bool) -> tuple[list[Out], int, int]:
    valid = [as_out(d) for d in valid_events(cfg)]
    bad = [o for _, o in hostile_messages(hostile, cfg.seed, big=big)] if hostile else []
    model = load_model(Settings().model_path)
    for o in bad:  # the generator's own check: none of them is a valid event
        with contextlib.suppress(InvalidEvent):
            parse_event(raw_of(o.value), model, now_ms=now_ms())
            raise AssertionError(f"hostile message parses as valid: {raw_of(o.value)[:200]!r}")
    return interleave(valid, bad, cfg.seed), len(valid), len(bad)


def sprinkle(cfg: Config) -> int:
    """Hostile messages mixed into the fault scenarios (the DLQ is checked under faults too)."""
    return max(10, cfg.events // 100)


def rename_some(outs: Sequence[Out], fraction: float, prefix: str, seed: int) -> list[Out]:
    """``outs`` with a ``fraction`` of the customers renamed ``prefix + id`` (new customers)."""
    rng = random.Random(f"faults:{seed}:rename")
    chosen: dict[str, bool] = {}
    out = []
    for o in outs:
        cids = customers_of([o])
        if not cids:
            out.append(o)
            continue
        cid = cids.pop()
        if chosen.setdefault(cid, rng.random() < fraction):
            doc = orjson.loads(o.value)
            doc["customer_id"] = prefix + cid
            out.append(as_out(doc))
        else:
            out.append(o)
    return out


def customers_of(outs: Iterable[Out]) -> set[str]:
    found = set()
    for o in outs:
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
            doc = orjson.loads(o.value)
            cid = doc.get("customer_id") if isinstance(doc, dict) else None
            if isinstance(cid, str) and o.key == cid.encode():
                found.add(cid)
    return found

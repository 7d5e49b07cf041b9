"""Every output of the scoring core on generated event streams, one canonical line each.

Run it once with the pure package first on ``sys.path`` and once with the compiled one
(``tests/scoring/test_compiled.py`` does): the two outputs must be equal byte for byte.

    python tests/scoring/scoring_trace.py --seed 1 --events 2000     # lines on stdout

A stream mixes valid events (in order, late, re-sent), NPS answers and invalid messages
(bad JSON, unknown types, bad scores, timestamps as text or in the future). Each step
records what the worker would keep or send: the parse error (reason and message) or the
event, ``apply``'s status, encoded state, changes (every field and the change id), the NPS
record and the encoded explanation; every few events ``next_crossing``, ``advance`` to a
later time, ``values_at``, a decode/encode round trip and the decoding of damaged state
bytes; at the end every customer advanced to the end time. Floats are written as
``float.hex`` (bit exact, ``-0.0`` kept), so an int where the other build has a float shows.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scoring_models, as a script

from scoring_models import small_model

import scoring

DAY = 86_400_000
START = 1_699_920_000_000  # 2023-11-14T00:00:00Z
MODELS = {"default": scoring.load_default_model, "small": small_model}


def canon(value: Any) -> Any:
    """JSON-able, with floats bit exact and the types of numbers kept apart."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return "f:" + value.hex()
    if isinstance(value, bytes):
        return "b:" + value.hex()
    if isinstance(value, dict) or hasattr(value, "items"):
        return [[canon(k), canon(v)] for k, v in sorted(value.items())]
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    raise TypeError(f"no canonical form for {type(value).__name__}")


def change_record(c: scoring.Change) -> list[Any]:
    fields = [
        c.change_id, c.customer_id, c.kind, c.name, c.from_tier, c.to_tier, c.entered,
        c.occurred_at_ms, c.score, dict(c.dimensions), c.cause, c.cause_event_id, c.model,
        c.model_version, c.cloudevent_type,
    ]  # fmt: skip
    return [canon(f) for f in fields]


def messages(rng: random.Random, model: scoring.Model, n: int, customers: int) -> Iterator[bytes]:
    """``n`` raw messages for ``customers`` customers over ~60 days from START."""
    types = list(model.event_type_names)
    sent: list[bytes] = []
    t = START
    for i in range(n):
        t += int(rng.expovariate(n / (60 * DAY)))
        roll = rng.random()
        if roll < 0.03 and sent:
            yield rng.choice(sent)  # re-sent: same id
            continue
        if roll < 0.06:
            yield rng.choice([b"{not json", b"[1, 2]", b'{"event_id": "x"}', b"\xff\xfe"])
            continue
        kind = "nps_response" if roll < 0.2 and "nps_response" in types else rng.choice(types)
        ts: Any = t - (rng.randrange(3 * DAY) if roll > 0.9 else 0)  # some late
        if rng.random() < 0.05:
            ts = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds")
        doc: dict[str, Any] = {
            "event_id": f"e{i}",
            "customer_id": f"c-{rng.randrange(customers)}",
            "type": kind if rng.random() > 0.02 else "no_such_type",
            "timestamp": ts if rng.random() > 0.01 else START + 400 * DAY,
        }
        if kind == "nps_response":
            doc["properties"] = {"score": rng.choice([*range(11), 11, "9", 9.0, True, None])}
        raw = orjson.dumps(doc)
        sent.append(raw)
        yield raw


def trace(seed: int, model_name: str, events: int, customers: int) -> Iterator[bytes]:
    model = MODELS[model_name]()
    rng = random.Random(f"trace:{seed}:{model_name}")
    states: dict[str, scoring.CustomerState] = {}
    expls: dict[str, scoring.Explanation] = {}
    now = START + 90 * DAY

    def line(*parts: Any) -> bytes:
        return orjson.dumps([canon(p) for p in parts]) + b"\n"

    for i, raw in enumerate(messages(rng, model, events, customers)):
        try:
            event = scoring.parse_event(raw, model, now_ms=now)
        except scoring.InvalidEvent as exc:
            yield line("invalid", i, exc.reason, str(exc))
            continue
        cid = event.customer_id
        before = states.get(cid)
        quiet = None
        if before is not None and i % 2:
            due = scoring.next_crossing(before, model)
            quiet = math.inf if due is None else due
        result = scoring.apply(before, event, model, dedup_memory=8, quiet_before_ms=quiet)
        state = states[cid] = result.state
        nps = result.nps
        if result.status != "duplicate":
            points = model.event_types[event.type].points if result.status == "applied" else 0.0
            expls[cid] = scoring.explain_add(expls.get(cid), event, points, model, keep=5)
        yield line(
            "apply", i, event.event_id, cid, event.type, event.ts_ms, event.nps_score,
            result.status, scoring.encode_state(state),
            [change_record(c) for c in result.changes],
            None if nps is None else [nps.day, nps.category, nps.tier, nps.score],
            scoring.encode_explanation(expls[cid], model) if cid in expls else None,
        )  # fmt: skip
        if i % 7 == 0:
            yield from probe(rng, model, cid, state, expls.get(cid))
    for cid in sorted(states):
        final, fired = scoring.advance(states[cid], cid, now, model)
        yield line("end", cid, scoring.encode_state(final), [change_record(c) for c in fired])


def probe(
    rng: random.Random,
    model: scoring.Model,
    cid: str,
    state: scoring.CustomerState,
    expl: scoring.Explanation | None,
) -> Iterator[bytes]:
    """The per-customer calls of a timer tick and of the read side, on one state."""
    due = scoring.next_crossing(state, model)
    later = state.clock_ms + rng.random() * 30 * DAY
    advanced, fired = scoring.advance(state, cid, later, model)
    values = scoring.values_at(state, model, later)
    encoded = scoring.encode_state(state)
    decoded = scoring.decode_state(encoded, model)
    quiet = [scoring.quiet_until(state, model, t) for t in (later, state.clock_ms + DAY)]
    if due is not None:
        quiet += [scoring.quiet_until(state, model, t) for t in (due - 1, due)]
    out: list[Any] = [
        "probe", cid, due, quiet, later, scoring.encode_state(advanced),
        [change_record(c) for c in fired], values.score, dict(values.dimensions),
        state.tier_name(model), list(state.segment_names(model)),
        decoded == state, scoring.encode_state(decoded) == encoded,
    ]  # fmt: skip
    if expl is not None:
        out.append(scoring.contributions_at(expl, model, later))
        out.append(orjson.dumps(scoring.recent_at(expl, model, later)))
        prints = scoring.encode_explanation(expl, model, fingerprints=True)
        back = scoring.decode_explanation(prints, model)
        out += [prints, scoring.encode_explanation(back, model), [r[3] for r in back.recent]]
    cut = rng.randrange(len(encoded))
    for damaged in (encoded[:cut], encoded[:cut] + b"\x00" + encoded[cut + 1 :]):
        try:
            out.append(scoring.encode_state(scoring.decode_state(damaged, model)))
        except scoring.InvalidState as exc:
            out.append(f"InvalidState: {exc}")
    yield orjson.dumps([canon(p) for p in out]) + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, action="append", default=None)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=60)
    args = parser.parse_args(argv)
    out = sys.stdout.buffer
    print(f"scoring from {Path(scoring.__file__).name}", file=sys.stderr)
    for seed in args.seed or [0]:
        for name in MODELS:
            out.writelines(trace(seed, name, args.events, args.customers))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

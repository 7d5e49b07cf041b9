"""Per-customer scoring state: an immutable value, compactly serialisable.

The state holds each dimension's value *at the state's clock* (the largest event time
seen, or the last decay crossing applied); values at any other time follow from the
half-lives. Everything else is what the rules need: the tier, the segments, the last
time of the event types a rule looks at, the latest NPS answer, the cap counters of
recent days and a bounded memory of recent event ids.

>>> from scoring.model import load_default_model
>>> model = load_default_model()
>>> state = new_state()
>>> state.is_new, state.tier_name(model), state.segment_names(model)
(True, 'cold', ())
>>> decode_state(encode_state(state), model) == state
True
"""

from __future__ import annotations

import binascii
import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from scoring.binstate import BINARY_FORMAT, Fields, decode_binary, encode_binary, sparse
from scoring.decay import decay_factor
from scoring.errors import InvalidState
from scoring.model import CAP_WINDOW_DAYS, DAY_MS, Model
from scoring.nps import Category, category
from scoring.plan import plan

__all__ = [
    "CAP_WINDOW_DAYS",
    "FINGERPRINT_BYTES",
    "STATE_FORMAT",
    "CustomerState",
    "Values",
    "decayed_values",
    "decode_state",
    "encode_state",
    "encode_state_json",
    "fingerprint",
    "new_state",
    "segment_names",
    "tier_name",
    "utc_day",
    "values_at",
]

#: The format :func:`encode_state` writes (binary, :mod:`scoring.binstate`); the JSON
#: formats 1 and 2 still decode, and format 2 is what :func:`encode_state_json` writes.
STATE_FORMAT = BINARY_FORMAT
JSON_STATE_FORMAT = 2
#: Bytes of blake2b digest kept per remembered event id.
FINGERPRINT_BYTES = 6
_MAX_EXPONENT = 1023.0  # as in :func:`scoring.decay.decay_factor`


@dataclass(frozen=True, slots=True)
class CustomerState:
    """One customer's state. Index-based fields follow the model's layout.

    * ``clock_ms``: the time ``values`` are at (``-inf`` before the first event);
    * ``values``: one value per ``model.dimensions`` (empty: all zero);
    * ``tier``: index into ``model.tiers``;
    * ``segments``: bit ``i`` set when the customer is in ``model.segments[i]``;
    * ``last_seen``: last event time per ``model.tracked`` name (None: never; empty: never);
    * ``nps_score`` / ``nps_at_ms``: the latest NPS answer by event time;
    * ``caps``: ``(index in model.event_type_names, UTC day number, count)`` of capped types;
    * ``recent_ids``: fingerprints of the last event ids applied, oldest first;
    * ``events_applied``: events applied (capped ones included, duplicates not);
    * ``last_event_ms``: the largest event time applied.
    """

    clock_ms: float = -math.inf
    values: tuple[float, ...] = ()
    tier: int = 0
    segments: int = 0
    last_seen: tuple[int | None, ...] = ()
    nps_score: int | None = None
    nps_at_ms: int | None = None
    caps: tuple[tuple[int, int, int], ...] = ()
    recent_ids: tuple[bytes, ...] = ()
    events_applied: int = 0
    last_event_ms: int | None = None

    @property
    def is_new(self) -> bool:
        """True before the first event."""
        return self.clock_ms == -math.inf

    @property
    def nps_category(self) -> Category | None:
        """Category of the latest NPS answer, or None."""
        return None if self.nps_score is None else category(self.nps_score)

    def tier_name(self, model: Model) -> str:
        """The name of the current tier."""
        return model.tiers[self.tier].name

    def segment_names(self, model: Model) -> tuple[str, ...]:
        """The segments the customer is in, in model order."""
        return tuple(r.name for i, r in enumerate(model.segments) if self.segments >> i & 1)

    def dimension_values(self, model: Model) -> tuple[float, ...]:
        """``values`` with one entry per dimension (zeros for a new state)."""
        return self.values or (0.0,) * len(model.dimensions)

    def last_seen_of(self, model: Model, name: str) -> int | None:
        """Last event time of tracked type ``name`` (or ``any``), None if never."""
        if not self.last_seen:
            return None
        return self.last_seen[model.tracked.index(name)]


@dataclass(frozen=True, slots=True)
class Values:
    """A customer's score and dimension values at one time."""

    score: float
    dimensions: Mapping[str, float]


def segment_names(state: CustomerState, model: Model) -> tuple[str, ...]:
    """The segments ``state`` is in, in model order (``state.segment_names(model)``)."""
    return state.segment_names(model)


def tier_name(state: CustomerState, model: Model) -> str:
    """The name of ``state``'s tier (``state.tier_name(model)``)."""
    return state.tier_name(model)


def new_state() -> CustomerState:
    """The state of a customer never seen: lowest tier, no segments, no clock."""
    return CustomerState()


def fingerprint(event_id: str) -> bytes:
    """The short digest remembered for an event id.

    >>> fingerprint("e1").hex()
    'fcb3209c5d09'
    """
    return hashlib.blake2b(event_id.encode(), digest_size=FINGERPRINT_BYTES).digest()


def utc_day(ts_ms: float) -> int:
    """Days since 1970-01-01 of the UTC calendar day holding ``ts_ms``.

    >>> utc_day(0), utc_day(86_399_999), utc_day(86_400_000)
    (0, 0, 1)
    """
    return int(ts_ms // DAY_MS)


def decayed_values(state: CustomerState, model: Model, t_ms: float) -> tuple[float, ...]:
    """Each dimension's value at ``t_ms``: ``value * 2 ** (-(t - clock) / half_life)``.

    This is *the* evaluation of values away from the clock: crossings, events and
    reports all use it, so that they agree to the last bit. For ``t < clock`` it is
    the same formula run backwards (values grow), which is only the "as of" value of
    what the state holds, ignoring events after ``t``.
    """
    if state.is_new:
        return (0.0,) * len(model.dimensions)
    dt = t_ms - state.clock_ms
    values, half_lives = state.dimension_values(model), model.half_lives_ms
    if not plan(model).finite_half_lives:  # pragma: no cover - let decay_factor raise
        return tuple(
            v * decay_factor(dt, h) if v else v for v, h in zip(values, half_lives, strict=True)
        )
    decayed = []
    for v, h in zip(values, half_lives, strict=True):
        if not v:  # (0 * inf would be nan far in the past)
            decayed.append(v)
            continue
        exponent = -dt / h  # decay_factor, without checking the half-life again
        decayed.append(v * (math.inf if exponent > _MAX_EXPONENT else 2.0**exponent))
    return tuple(decayed)


def values_at(state: CustomerState, model: Model, t_ms: float) -> Values:
    """Score and dimension values at ``t_ms`` (see :func:`decayed_values`).

    >>> from scoring.model import load_default_model
    >>> model = load_default_model()
    >>> email = model.dimension_index("email")
    >>> values = [0.0] * len(model.dimensions)
    >>> values[email] = 8.0
    >>> state = CustomerState(clock_ms=0.0, values=tuple(values))
    >>> v = values_at(state, model, 14 * 86_400_000)       # one email half-life later
    >>> v.score, v.dimensions["email"]
    (4.0, 4.0)
    """
    values = decayed_values(state, model, t_ms)
    return Values(
        math.fsum(values), MappingProxyType(dict(zip(model.dimensions, values, strict=True)))
    )


# --------------------------------------------------------------------------- encoding
#
# Format 2 is a JSON array (see docs/scoring.md, "State encoding"):
#   [2, clock, mask, values, tier, segments, last_seen, nps_score, nps_at, caps, ids, applied,
#    last]
# * ``mask`` has bit i set when dimension i's value is not +0.0 (None: no values yet), and
#   ``values`` holds only those values (float64 little-endian, base64 without padding);
#   format 1 (release 0.1) had no mask and every value, and still decodes;
# * times other than ``last`` (the last event time, the base) are relative to it:
#   ``last_seen`` and ``nps_at`` as ``base - t`` and cap days as ``day(base) - day``;
#   ``clock`` is the integer 0 when it equals the base, else the absolute float;
# * ``values`` are the float64 values packed little-endian, base64 without padding;
# * ``ids`` are the fingerprints concatenated, base64 without padding.


def encode_state(state: CustomerState) -> bytes:
    """Format-3 bytes (:mod:`scoring.binstate`); every float round-trips exactly.

    A state with an integer beyond 64 bits (no real history has one) is written in
    format 2 (:func:`encode_state_json`).

    >>> encode_state(new_state())[0]
    3
    """
    try:
        return encode_binary(state)
    except OverflowError:
        return encode_state_json(state)


def encode_state_json(state: CustomerState) -> bytes:
    """Format 2: a compact JSON array; every float round-trips exactly.

    >>> encode_state_json(new_state())
    b'[2,null,null,"",0,0,[],null,null,[],"",0,null]'
    """
    base = state.last_event_ms or 0
    clock: float | int | None = None
    if not state.is_new:
        clock = 0 if state.clock_ms == base else state.clock_ms
    base_day = utc_day(base)
    mask, kept = sparse(state.values) if state.values else (None, [])
    return orjson.dumps(
        [
            JSON_STATE_FORMAT,
            clock,
            mask,
            _b64(_packer(len(kept)).pack(*kept)),
            state.tier,
            state.segments,
            [None if t is None else base - t for t in state.last_seen],
            state.nps_score,
            None if state.nps_at_ms is None else base - state.nps_at_ms,
            [[kind, base_day - day, count] for kind, day, count in state.caps],
            _b64(b"".join(state.recent_ids)),
            state.events_applied,
            state.last_event_ms,
        ]
    )


def decode_state(raw: bytes, model: Model) -> CustomerState:
    """Inverse of :func:`encode_state` (formats 1, 2 and 3), checked against ``model``'s layout.

    Raises :class:`~scoring.errors.InvalidState` when the bytes are not a state of this
    format or do not fit the model (other dimensions, tiers, segments or tracked types).
    """
    if raw[:1] == _BINARY_LEAD:
        return _checked(decode_binary(raw, len(model.dimensions), len(model.tracked)), model)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidState(f"state is not valid JSON: {exc}") from None
    if isinstance(doc, list) and len(doc) == 13 and doc[0] == JSON_STATE_FORMAT:
        values = _sparse_values(doc[2], doc[3], model)
        del doc[2:4]
    elif isinstance(doc, list) and len(doc) == 12 and doc[0] == 1:
        values = _values(doc[2], model)
        del doc[2]
    else:
        raise InvalidState(f"state is not a format-1 or format-{JSON_STATE_FORMAT} array")
    _, clock, tier, segments, last_seen, nps_score, nps_at, caps, ids, applied, last = doc
    last_event = _opt_int(last, "last_event_ms")
    base = last_event or 0
    if clock is None:
        clock_ms = -math.inf
    elif type(clock) is int and clock == 0:
        clock_ms = float(base)
    elif type(clock) is float:
        clock_ms = clock
    else:
        raise InvalidState("clock: not a number")
    return CustomerState(
        clock_ms=clock_ms,
        values=values,
        tier=_index(tier, len(model.tiers), "tier"),
        segments=_index(segments, 1 << len(model.segments), "segments"),
        last_seen=_last_seen(last_seen, model, base),
        nps_score=_opt_int(nps_score, "nps_score", 10),
        nps_at_ms=None if nps_at is None else base - _int(nps_at, "nps_at_ms"),
        caps=_caps(caps, model, utc_day(base)),
        recent_ids=_ids(ids),
        events_applied=_index(applied, None, "events_applied"),
        last_event_ms=last_event,
    )


_BINARY_LEAD = bytes([BINARY_FORMAT])


def _checked(fields: Fields, model: Model) -> CustomerState:
    """A format-3 state's fields, range-checked against ``model`` as the JSON ones are."""
    _, _, tier, segments, _, nps, _, caps, _, _, _ = fields
    _index(tier, len(model.tiers), "tier")
    _index(segments, 1 << len(model.segments), "segments")
    _opt_int(nps, "nps_score", 10)
    types = len(model.event_type_names)
    for kind, _, _ in caps:
        _index(kind, types, "caps type")
    return CustomerState(*fields)


def _sparse_values(mask: Any, packed: Any, model: Model) -> tuple[float, ...]:
    blob = _unb64(packed, "values")
    if mask is None:
        if blob:
            raise InvalidState("values: values without a mask")
        return ()
    dims = len(model.dimensions)
    if type(mask) is not int or not 0 <= mask < 1 << dims:
        raise InvalidState(f"values: mask out of range for {dims} dimensions")
    count = mask.bit_count()
    if len(blob) != 8 * count:
        raise InvalidState(f"values: expected {count} packed values")
    kept = iter(_packer(count).unpack(blob))
    return tuple(next(kept) if mask >> i & 1 else 0.0 for i in range(dims))


def _packer(count: int) -> struct.Struct:
    """The little-endian float64 layout of ``count`` values (cached)."""
    packer = _PACKERS.get(count)
    if packer is None:
        packer = struct.Struct(f"<{count}d")
        if count <= _CACHED:
            _PACKERS[count] = packer
    return packer


_PACKERS: dict[int, struct.Struct] = {}


def _b64(blob: bytes) -> str:
    return binascii.b2a_base64(blob, newline=False).decode("ascii").rstrip("=")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidState(f"{what}: not a string")
    try:  # base64.b64decode(..., validate=True), without its wrapping
        return binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidState(f"{what}: not base64: {exc}") from None


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise InvalidState(f"{what}: not an integer")
    return value


def _index(value: Any, limit: int | None, what: str) -> int:
    if type(value) is not int or value < 0 or (limit is not None and value >= limit):
        raise InvalidState(f"{what}: out of range for this model")
    return value


def _opt_int(value: Any, what: str, limit: int | None = None) -> int | None:
    return None if value is None else _index(value, None if limit is None else limit + 1, what)


def _values(values: Any, model: Model) -> tuple[float, ...]:
    blob = _unb64(values, "values")
    if len(blob) not in (0, 8 * len(model.dimensions)):
        raise InvalidState(f"values: expected {len(model.dimensions)} dimension values")
    return _packer(len(blob) // 8).unpack(blob)


def _last_seen(last_seen: Any, model: Model, base: int) -> tuple[int | None, ...]:
    if not isinstance(last_seen, list) or len(last_seen) not in (0, len(model.tracked)):
        raise InvalidState(f"last_seen: expected {len(model.tracked)} entries")
    return tuple(
        None if t is None else base - (t if type(t) is int else _int(t, "last_seen"))
        for t in last_seen
    )


def _caps(caps: Any, model: Model, base_day: int) -> tuple[tuple[int, int, int], ...]:
    if not isinstance(caps, list):
        raise InvalidState("caps: not a list")
    types = len(model.event_type_names)
    out: list[tuple[int, int, int]] = []
    for entry in caps:
        if not isinstance(entry, list) or len(entry) != 3:
            raise InvalidState("caps: entries are [type, day, count]")
        kind, day, count = entry
        if not (type(kind) is int and 0 <= kind < types):
            kind = _index(kind, types, "caps type")
        if type(day) is not int:
            day = _int(day, "caps day")
        if not (type(count) is int and count >= 0):
            count = _index(count, None, "caps count")
        out.append((kind, base_day - day, count))
    return tuple(out)


def _ids(ids: Any) -> tuple[bytes, ...]:
    blob = _unb64(ids, "recent_ids")
    if len(blob) % FINGERPRINT_BYTES:
        raise InvalidState("recent_ids: not a whole number of fingerprints")
    count = len(blob) // FINGERPRINT_BYTES
    splitter = _SPLITTERS.get(count)
    if splitter is None:
        splitter = struct.Struct(f"{FINGERPRINT_BYTES}s" * count)
        if count <= _CACHED:
            _SPLITTERS[count] = splitter
    return splitter.unpack(blob)


_SPLITTERS: dict[int, struct.Struct] = {}
_CACHED = 256  # layouts kept for reuse: states this size or smaller

"""State format 3: a :class:`~scoring.state.CustomerState` as packed binary, the one
state format.

Layout, all little-endian (docs/scoring.md, "State encoding"):

* ``B`` format (3), ``B`` flags (:data:`_NEW` ...), ``B`` widths: the byte width of the
  "small" unsigned integers (bits 0-1), of the signed time offsets (bits 2-3) and of the
  events-applied counter (bits 4-5), each 1, 2, 4 or 8 as code 0-3, the smallest that
  holds every such value of this state;
* small: tier, segments, caps, remembered ids; then events applied; small: [value
  mask], [NPS score]; ``q`` the last event time, if any; ``d`` the clock, unless new or
  equal to the last event time;
* ``d`` per bit of the mask; the offsets ``last - t`` of ``last_seen`` (the width's
  lowest value for "never"), of the NPS answer and (in days before the last event's
  day) of each cap's day; each cap's (small type, small count); the id fingerprints,
  concatenated.

Every float round-trips to the bit. One :class:`struct.Struct` per layout, cached, so
encoding is one C call and decoding three, plus a little arithmetic. Bytes that do not
start with the format byte are refused with :class:`~scoring.errors.UnknownFormat`.

>>> from scoring.model import load_default_model
>>> decode_state(b"[2,null]", load_default_model())
Traceback (most recent call last):
...
scoring.errors.UnknownFormat: state: format 91 is not read (only format 3)
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache
from typing import Any

from scoring.codec.widths import SIGNED, UNSIGNED, never, signed_code, unsigned_code
from scoring.errors import InvalidState, UnknownFormat
from scoring.model import Model
from scoring.state import FINGERPRINT_BYTES, CustomerState
from scoring.timeline import DAY_MS

__all__ = ["STATE_FORMAT", "decode_state", "encode_state"]

#: The version byte of a state: the first byte of :func:`encode_state`'s bytes.
STATE_FORMAT = 3

_NEW = 1  # no clock yet (and nothing else)
_CLOCK_AT_LAST = 2  # the clock is the last event time: not stored
_HAS_LAST = 4  # a last event time
_HAS_SEEN = 8  # last_seen has one entry per tracked type (else it is empty)
_HAS_NPS = 16  # an NPS score
_HAS_NPS_AT = 32  # an NPS answer time
_HAS_VALUES = 64  # dimension values (a mask and the non-zero ones)
_FLAGS = 127

_HEAD = struct.Struct("<BBB")
_LEAD = bytes([STATE_FORMAT])


@lru_cache(maxsize=1024)
def _fixed(flags: int, small: int, applied: int) -> struct.Struct:
    u = UNSIGNED[small]
    fmt = "<" + u * 4 + UNSIGNED[applied]
    fmt += u if flags & _HAS_VALUES else ""
    fmt += u if flags & _HAS_NPS else ""
    fmt += "q" if flags & _HAS_LAST else ""
    fmt += "" if flags & (_NEW | _CLOCK_AT_LAST) else "d"
    return struct.Struct(fmt)


@lru_cache(maxsize=4096)
def _rest(small: int, delta: int, shape: tuple[int, int, bool, int, int]) -> struct.Struct:
    """``shape``: values, last_seen entries, NPS time or not, caps, ids."""
    n_values, n_seen, nps_at, n_caps, n_ids = shape
    u, s = UNSIGNED[small], SIGNED[delta]
    offsets = n_seen + nps_at + n_caps
    return struct.Struct(f"<{n_values}d{offsets}{s}{2 * n_caps}{u}{FINGERPRINT_BYTES * n_ids}s")


def _sparse(values: tuple[float, ...]) -> tuple[int, list[float]]:
    """A bit mask of the values that are not +0.0, and those values.

    >>> _sparse((0.0, 2.5, 0.0, -0.0))
    (10, [2.5, -0.0])
    """
    mask, kept = 0, []
    for i, v in enumerate(values):
        if v or math.copysign(1.0, v) < 0:  # -0.0 is kept: the sign of zero round-trips
            mask |= 1 << i
            kept.append(v)
    return mask, kept


def _flags(state: CustomerState) -> int:
    last = state.last_event_ms
    flags = _HAS_LAST if last is not None else 0
    if state.is_new:
        flags |= _NEW
    elif last is not None and state.clock_ms == last:
        flags |= _CLOCK_AT_LAST
    if state.last_seen:
        flags |= _HAS_SEEN
    if state.nps_at_ms is not None:
        flags |= _HAS_NPS_AT
    if state.values:
        flags |= _HAS_VALUES
    if state.nps_score is not None:
        flags |= _HAS_NPS
    return flags


def encode_state(state: CustomerState) -> bytes:
    """Format-3 bytes of ``state``; every float round-trips exactly.

    Raises :class:`~scoring.errors.InvalidState` for a value a 64-bit field cannot hold
    (no real history has one).

    >>> from scoring.state import new_state
    >>> encode_state(new_state())
    b'\\x03\\x01\\x00\\x00\\x00\\x00\\x00\\x00'
    """
    flags = _flags(state)
    last, nps_at, seen, caps_in = state.last_event_ms, state.nps_at_ms, state.last_seen, state.caps
    base = last or 0
    mask, kept = _sparse(state.values)
    n_ids, n_caps = len(state.recent_ids), len(caps_in)
    out: list[float | bytes] = [state.tier, state.segments, n_caps, n_ids, state.events_applied]
    top = max(state.tier, state.segments, n_caps, n_ids, mask, state.nps_score or 0)
    if flags & _HAS_VALUES:
        out.append(mask)
    if state.nps_score is not None:
        out.append(state.nps_score)
    if last is not None:
        out.append(last)
    if not flags & (_NEW | _CLOCK_AT_LAST):
        out.append(state.clock_ms)
    out += kept
    offsets = [None if t is None else base - t for t in seen]
    if nps_at is not None:
        offsets.append(base - nps_at)
    pairs: list[int] = []
    if caps_in:
        base_day = int(base // DAY_MS)
        offsets += [base_day - day for _, day, _ in caps_in]
        pairs = [x for kind, _, count in caps_in for x in (kind, count)]
        top = max(top, *pairs)
    far = max([abs(o) for o in offsets if o is not None], default=0)
    small, delta, applied = (
        unsigned_code(top),
        signed_code(far),
        unsigned_code(state.events_applied),
    )
    sentinel = never(delta)
    out += [sentinel if o is None else o for o in offsets]
    out += pairs
    out.append(b"".join(state.recent_ids))
    key = (flags, small, delta, applied, len(kept), len(seen), n_caps, n_ids)
    try:
        head, layout = _WHOLE.get(key) or _whole(key)
        return head + layout.pack(*out)
    except struct.error as exc:
        raise InvalidState(f"state does not fit format {STATE_FORMAT}: {exc}") from None


def _whole(key: tuple[int, ...]) -> tuple[bytes, struct.Struct]:
    """The header's bytes, and the fixed part and rest as one layout (one call to encode)."""
    flags, small, delta, applied, n_values, n_seen, n_caps, n_ids = key
    head = _HEAD.pack(STATE_FORMAT, flags, small | delta << 2 | applied << 4)
    fixed = _fixed(flags, small, applied).format[1:]
    shape = (n_values, n_seen, bool(flags & _HAS_NPS_AT), n_caps, n_ids)
    whole = head, struct.Struct(f"<{fixed}{_rest(small, delta, shape).format[1:]}")
    if len(_WHOLE) < _CACHED:
        _WHOLE[key] = whole
    return whole


_WHOLE: dict[tuple[int, ...], tuple[bytes, struct.Struct]] = {}
_CACHED = 4096  # layouts kept for reuse


def decode_state(raw: bytes, model: Model) -> CustomerState:
    """Inverse of :func:`encode_state`, checked against ``model``'s layout.

    Raises :class:`~scoring.errors.UnknownFormat` for bytes of another format, and
    :class:`~scoring.errors.InvalidState` when they are not a whole format-3 state or do
    not fit the model (other dimensions, tiers, segments or tracked types).
    """
    if raw[:1] != _LEAD:
        raise UnknownFormat("state", raw[0] if raw else None, STATE_FORMAT)
    fields = _fields(raw, len(model.dimensions), len(model.tracked))
    _, _, tier, segments, _, nps, _, caps, _, _, _ = fields
    _index(tier, len(model.tiers), "tier")
    _index(segments, 1 << len(model.segments), "segments")
    if nps is not None:
        _index(nps, 11, "nps_score")
    types = len(model.event_type_names)
    for kind, _, _ in caps:
        _index(kind, types, "caps type")
    return CustomerState(*fields)


def _fields(raw: bytes, dims: int, tracked: int) -> tuple[Any, ...]:
    """The fields of a format-3 state, in :class:`CustomerState`'s order, to be checked
    against the model (``dims`` and ``tracked``: its dimension and tracked-type counts)."""
    try:
        _, flags, widths = _HEAD.unpack_from(raw)
        if flags & ~_FLAGS or widths > 63:
            raise InvalidState(f"state: not a format-{STATE_FORMAT} header")
        small, delta, applied = widths & 3, widths >> 2 & 3, widths >> 4
        fixed_s = _fixed(flags, small, applied)
        tier, segments, n_caps, n_ids, count, *more = fixed_s.unpack_from(raw, 3)
        mask = more.pop(0) if flags & _HAS_VALUES else None
        if mask is not None and mask >= 1 << dims:
            raise InvalidState(f"values: mask out of range for {dims} dimensions")
        nps = more.pop(0) if flags & _HAS_NPS else None
        last = more.pop(0) if flags & _HAS_LAST else None
        n_values = 0 if mask is None else mask.bit_count()
        n_seen = tracked if flags & _HAS_SEEN else 0
        has_nps_at = bool(flags & _HAS_NPS_AT)
        rest_s = _rest(small, delta, (n_values, n_seen, has_nps_at, n_caps, n_ids))
        if len(raw) != 3 + fixed_s.size + rest_s.size:
            size = 3 + fixed_s.size + rest_s.size
            raise InvalidState(f"state: {len(raw)} bytes, its layout needs {size}")
        rest = rest_s.unpack_from(raw, 3 + fixed_s.size)
    except struct.error as exc:
        raise InvalidState(f"state: not a format-{STATE_FORMAT} state: {exc}") from None
    base = last or 0
    values: tuple[float, ...] = ()
    if mask is not None:
        if n_values == dims:
            values = rest[:dims]
        else:
            kept = iter(rest[:n_values])
            values = tuple(next(kept) if mask >> d & 1 else 0.0 for d in range(dims))
    j = n_values + n_seen
    sentinel = never(delta)
    seen = tuple(None if o == sentinel else base - o for o in rest[n_values:j])
    nps_at = None
    if has_nps_at:
        nps_at, j = base - rest[j], j + 1
    caps: tuple[tuple[int, int, int], ...] = ()
    if n_caps:
        base_day = int(base // DAY_MS)
        days, pairs = rest[j : j + n_caps], rest[j + n_caps : j + 3 * n_caps]
        caps = tuple((pairs[2 * k], base_day - day, pairs[2 * k + 1]) for k, day in enumerate(days))
    ids, step = rest[-1], FINGERPRINT_BYTES
    return (
        _clock(flags, last, more),
        values,
        tier,
        segments,
        seen,
        nps,
        nps_at,
        caps,
        tuple(ids[k : k + step] for k in range(0, len(ids), step)),
        count,
        last,
    )


def _clock(flags: int, last: int | None, more: list[Any]) -> float:
    if flags & _NEW:
        return -math.inf
    if not flags & _CLOCK_AT_LAST:
        return float(more[0])
    if last is None:
        raise InvalidState("clock: at the last event time, but there is no last event")
    return float(last)


def _index(value: int, limit: int, what: str) -> None:
    if value >= limit:
        raise InvalidState(f"{what}: out of range for this model")

"""Explanation format 3: a :class:`~scoring.explain.Explanation` as packed binary.

Format 2 (JSON, :mod:`scoring.explain`) spends its bytes on digits, brackets and quotes;
a one-event explanation takes ~55 bytes there and ~35 here. Layout, little-endian
(docs/scoring.md, "Explanation encoding"):

* ``B`` format (3), ``B`` widths: bits 0-1 the byte width of the signed time offsets
  ``at - ts`` (1, 2, 4 or 8 as code 0-3, the smallest that holds them all), bit 2 the
  width of the id lengths (2 bytes, else 1), bit 3 the recent events' points as
  ``float32`` (when every one of them round-trips exactly through it, else ``float64``),
  bit 4 "one event": the only per-type sum is the only recent event's type and points,
  bit for bit (a customer's first event), and is not stored;
* ``q`` the reference time ``at`` (integral ms), ``B`` the number of per-type sums and
  ``B`` the number of recent events;
* column by column: the types' indexes in ``model.event_type_names`` (``B`` each), their
  decayed sums (``d``); the recent events' offsets, type indexes (``B``), points and id
  lengths; then the ids, UTF-8, concatenated.

Every float round-trips to the bit. An explanation this cannot hold (a time that is not
an integral number of ms, more than 255 types or events, an id over 65,535 bytes) is
written as format 2 by :func:`scoring.explain.encode_explanation`.

>>> raw = encode_binary(1000.0, (("a", 2.5),), ((1000, "a", 2.5, "e1"),), {"a": 0})
>>> len(raw), decode_binary(raw, ["a"])
(21, (1000.0, (('a', 2.5),), ((1000, 'a', 2.5, 'e1'),)))
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache

from scoring.binstate import SIGNED, signed_code
from scoring.errors import InvalidState

__all__ = ["BINARY_EXPLANATION", "decode_binary", "encode_binary"]

#: The first byte of a format-3 explanation (a JSON one starts with ``[``).
BINARY_EXPLANATION = 3

_LENGTH2 = 4
_POINTS32 = 8
_ONE = 16  # by_type is the one recent event's (type, points), to the bit: not stored
_WIDTHS = 31
_D = struct.Struct("<d")
_HEAD = struct.Struct("<BBqBB")
_LIMIT = 0xFF
_I64 = 1 << 63

Typed = tuple[str, float]  # (event type, decayed sum), as in Explanation.by_type
Recent = tuple[int, str, float, str]  # (ts ms, event type, points, event id)


@lru_cache(maxsize=256)
def _f32(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}f")


def _f32_exact(points: list[float]) -> bool:
    """Whether every one of ``points`` round-trips through ``float32``."""
    layout = _f32(len(points))
    try:
        back = layout.unpack(layout.pack(*points))
    except OverflowError:
        return False
    return list(back) == points


@lru_cache(maxsize=1024)
def _layout(widths: int, n_types: int, n_recent: int) -> struct.Struct:
    offset = SIGNED[widths & 3]
    points = "f" if widths & _POINTS32 else "d"
    length = "H" if widths & _LENGTH2 else "B"
    n = n_recent
    return struct.Struct(f"<{n_types}B{n_types}d{n}{offset}{n}B{n}{points}{n}{length}")


def encode_binary(
    at_ms: float, by_type: Sequence[Typed], recent: Sequence[Recent], index: Mapping[str, int]
) -> bytes | None:
    """Format-3 bytes, or None when the explanation does not fit the format. ``index``:
    event type name -> its index; types not in it are left out."""
    if not (at_ms.is_integer() and -_I64 <= at_ms < _I64):
        return None
    try:
        return _encode(int(at_ms), by_type, recent, index)
    except KeyError:  # a type the model no longer has: leave it out
        by_type = [(t, v) for t, v in by_type if t in index]
        recent = [r for r in recent if r[1] in index]
        return _encode(int(at_ms), by_type, recent, index)


def _encode(
    at: int, by_type: Sequence[Typed], recent: Sequence[Recent], index: Mapping[str, int]
) -> bytes | None:
    if len(by_type) > _LIMIT or len(recent) > _LIMIT:
        return None
    ids, lengths, offsets, kinds, points = [], [], [], [], []
    widths = 0
    for ts, t, p, e in recent:
        b = e.encode()
        ids.append(b)
        lengths.append(len(b))
        offsets.append(at - ts)
        kinds.append(index[t])
        points.append(p)
    if recent:
        widths = signed_code(max(map(abs, offsets)))  # the largest magnitude sets the width
        if max(lengths) > _LIMIT:
            widths |= _LENGTH2
        if _f32_exact(points):
            widths |= _POINTS32
        if _is_one(by_type, recent):
            widths |= _ONE
            by_type = ()
    n_types, n = len(by_type), len(recent)
    try:
        return (
            _HEAD.pack(BINARY_EXPLANATION, widths, at, n_types, n)
            + _layout(widths, n_types, n).pack(
                *[index[t] for t, _ in by_type],
                *[v for _, v in by_type],
                *offsets,
                *kinds,
                *points,
                *lengths,
            )
            + b"".join(ids)
        )
    except struct.error:  # beyond the widths: a type index over 255, an offset over 63 bits
        return None


def _is_one(by_type: Sequence[Typed], recent: Sequence[Recent]) -> bool:
    """A customer's first event: the sum of its type is its points, bit for bit."""
    if len(by_type) != 1 or len(recent) != 1:
        return False
    (t, v), (_, u, p, _) = by_type[0], recent[0]
    return t == u and _D.pack(v) == _D.pack(p)


def decode_binary(
    raw: bytes, names: Sequence[str]
) -> tuple[float, tuple[Typed, ...], tuple[Recent, ...]]:
    """``(at, by_type, recent)`` from format-3 bytes (``names``: the event types by index);
    InvalidState on bytes that are not one or a type index ``names`` does not have."""
    try:
        fmt, widths, at, n_types, n = _HEAD.unpack_from(raw)
        if fmt != BINARY_EXPLANATION or widths & ~_WIDTHS:
            raise ValueError(f"format {fmt} widths {widths:#x}")
        if widths & _ONE and (n_types, n) != (0, 1):
            raise ValueError(f"{n_types} sums and {n} events with the one-event flag")
        layout = _layout(widths, n_types, n)
        fields = layout.unpack_from(raw, _HEAD.size)
        m = 2 * n_types
        by_type = tuple(zip([names[i] for i in fields[:n_types]], fields[n_types:m], strict=True))
        pos = _HEAD.size + layout.size
        ids = []
        for length in fields[m + 3 * n :]:
            end = pos + length
            ids.append(raw[pos:end].decode())
            pos = end
        if pos != len(raw):
            raise ValueError(
                f"{len(raw) - pos} bytes after the ids"
                if pos < len(raw)
                else "ids run past the end"
            )
        a, b, c = m + n, m + 2 * n, m + 3 * n
        recent = tuple(
            (at - d, names[i], p, e)
            for d, i, p, e in zip(fields[m:a], fields[a:b], fields[b:c], ids, strict=True)
        )
        if widths & _ONE:
            by_type = ((recent[0][1], recent[0][2]),)
        return float(at), by_type, recent
    except IndexError:
        raise InvalidState(f"explanation: an event type index over {len(names) - 1}") from None
    except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidState(f"explanation: {exc}") from None

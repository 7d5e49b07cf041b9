"""Explanation formats 3 and 4: a :class:`~scoring.explain.Explanation` as packed binary.

Layout of format 3, little-endian (docs/scoring.md, "Explanation encoding"):

* ``B`` format (3), ``B`` widths: bits 0-1 the byte width of the signed time offsets
  ``at - ts`` (1, 2, 4 or 8 as code 0-3, the smallest that holds them all), bit 2 the
  width of the id lengths (2 bytes, else 1), bit 3 the recent events' points as
  ``float32`` (when every one of them round-trips exactly through it, else ``float64``),
  bit 4 "one event": the only per-type sum is the only recent event's type and points,
  bit for bit (a customer's first event), and is not stored; bit 5 "wide": the counts
  take 4 bytes and the type indexes 2 (more than 255 types or events), else 1 each;
* ``q`` the reference time ``at`` (integral ms), the number of per-type sums and the
  number of recent events;
* column by column: the types' indexes in ``model.event_type_names``, their decayed
  sums (``d``); the recent events' offsets, type indexes, points and id lengths; then
  the ids, UTF-8, concatenated.

Format 4 (``fingerprints=True``) is format 3 with each event id replaced by its 6-byte
fingerprint (:func:`scoring.state.fingerprint`, the digest the dedup memory keeps): no
id lengths, the fingerprints concatenated. Decoded, such an id reads ``"fp:"`` and the
fingerprint's 12 hex digits (:func:`id_fingerprint`); encoded again in format 4 it keeps
those bytes, so an explanation can be decoded and encoded any number of times.

Every float round-trips to the bit. Types the model no longer has are left out.
Bytes that do not start with a format byte read here are refused with
:class:`~scoring.errors.UnknownFormat`.

>>> from scoring.model import load_default_model
>>> model = load_default_model()
>>> e = Explanation(1e12, (("email_open", 2.5),), ((999_999_000_000, "email_open", 3.0, "e1"),))
>>> raw = encode_explanation(e, model)
>>> raw[0], len(raw), decode_explanation(raw, model) == e
(3, 33, True)
>>> decode_explanation(b"[2,1,[],[]]", model)
Traceback (most recent call last):
...
scoring.errors.UnknownFormat: explanation: format 91 is not read (only formats 3 and 4)
>>> raw = encode_explanation(e, model, fingerprints=True)
>>> raw[0], len(raw), decode_explanation(raw, model).recent[0][3]
(4, 36, 'fp:fcb3209c5d09')
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache

from scoring.codec.widths import SIGNED, signed_code
from scoring.errors import InvalidState, UnknownFormat
from scoring.explain import Explanation
from scoring.model import Model
from scoring.state import FINGERPRINT_BYTES, fingerprint

__all__ = [
    "EXPLANATION_FORMAT",
    "FINGERPRINTS_FORMAT",
    "decode_explanation",
    "encode_explanation",
    "id_fingerprint",
]

#: The version byte of an explanation with its event ids: :func:`encode_explanation`'s
#: first byte.
EXPLANATION_FORMAT = 3
#: The version byte of an explanation with fingerprints of its event ids.
FINGERPRINTS_FORMAT = 4
_PREFIX = "fp:"

_LENGTH2 = 4
_POINTS32 = 8
_ONE = 16  # by_type is the one recent event's (type, points), to the bit: not stored
_WIDE = 32  # 4-byte counts and 2-byte type indexes
_WIDTHS = 63
_D = struct.Struct("<d")
_HEAD = struct.Struct("<BBqBB")
_HEAD_WIDE = struct.Struct("<BBqII")
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
    except OverflowError:  # beyond float32's range
        return False
    return list(back) == points


@lru_cache(maxsize=1024)
def _layout(widths: int, n_types: int, n_recent: int, prints: bool = False) -> struct.Struct:
    offset = SIGNED[widths & 3]
    kind = "H" if widths & _WIDE else "B"
    points = "f" if widths & _POINTS32 else "d"
    length = "H" if widths & _LENGTH2 else "B"
    n = n_recent
    ids = f"{FINGERPRINT_BYTES * n}s" if prints else f"{n}{length}"
    return struct.Struct(f"<{n_types}{kind}{n_types}d{n}{offset}{n}{kind}{n}{points}{ids}")


def id_fingerprint(event_id: str) -> str:
    """How format 4 keeps, and gives back, an event id: ``"fp:"`` and the hex digits of
    its fingerprint (an id already in that form is kept as it is).

    >>> id_fingerprint("e1"), id_fingerprint("fp:fcb3209c5d09")
    ('fp:fcb3209c5d09', 'fp:fcb3209c5d09')
    """
    return _PREFIX + _print_of(event_id).hex()


def _print_of(event_id: str) -> bytes:
    """The fingerprint bytes format 4 stores for ``event_id``."""
    if len(event_id) == 15 and event_id.startswith(_PREFIX):
        digits = event_id[3:]
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            return fingerprint(event_id)
        if raw.hex() == digits:  # (not "fp:00FF..." nor with spaces: those are ids)
            return raw
    return fingerprint(event_id)


def encode_explanation(expl: Explanation, model: Model, *, fingerprints: bool = False) -> bytes:
    """Format-3 bytes of ``expl`` (format 4 with ``fingerprints``: each event id as its
    fingerprint); types ``model`` does not have are left out.

    Raises :class:`~scoring.errors.InvalidState` for what the format cannot hold (no
    explanation :func:`~scoring.explain.explain_add` builds): a reference time that is
    not an integral number of ms within 64 bits, an event id over 65,535 bytes.
    """
    at = expl.at_ms
    if not (at.is_integer() and -_I64 <= at < _I64):
        raise InvalidState(f"explanation: at={at!r} is not an integral number of ms")
    index = model.plan.type_index
    try:
        return _encode(int(at), expl.by_type, expl.recent, index, fingerprints)
    except KeyError:  # a type the model no longer has: leave it out
        by_type = [(t, v) for t, v in expl.by_type if t in index]
        recent = [r for r in expl.recent if r[1] in index]
        return _encode(int(at), by_type, recent, index, fingerprints)


def _encode(
    at: int,
    by_type: Sequence[Typed],
    recent: Sequence[Recent],
    index: Mapping[str, int],
    prints: bool,
) -> bytes:
    ids, lengths, offsets, kinds, points = [], [], [], [], []
    widths = 0
    for ts, t, p, e in recent:
        b = _print_of(e) if prints else e.encode()
        ids.append(b)
        lengths.append(len(b))
        offsets.append(at - ts)
        kinds.append(index[t])
        points.append(p)
    if recent:
        widths = signed_code(max(map(abs, offsets)))  # the largest magnitude sets the width
        if max(lengths) > 0xFF and not prints:
            widths |= _LENGTH2
        if _f32_exact(points):
            widths |= _POINTS32
        if _is_one(by_type, recent):
            widths |= _ONE
            by_type = ()
    n_types, n = len(by_type), len(recent)
    fields: list[float | bytes] = [
        *[index[t] for t, _ in by_type],
        *[v for _, v in by_type],
        *offsets,
        *kinds,
        *points,
    ]
    tail = b"".join(ids)
    if prints:
        fields.append(tail)
        tail = b""
    else:
        fields += lengths
    fmt = FINGERPRINTS_FORMAT if prints else EXPLANATION_FORMAT
    try:
        head = _HEAD.pack(fmt, widths, at, n_types, n)
        return head + _layout(widths, n_types, n, prints).pack(*fields) + tail
    except struct.error:  # more than 255 types or events, a type index over 255
        widths |= _WIDE
    try:
        head = _HEAD_WIDE.pack(fmt, widths, at, n_types, n)
        return head + _layout(widths, n_types, n, prints).pack(*fields) + tail
    except struct.error as exc:
        raise InvalidState(f"explanation does not fit format {fmt}: {exc}") from None


def _is_one(by_type: Sequence[Typed], recent: Sequence[Recent]) -> bool:
    """A customer's first event: the sum of its type is its points, bit for bit."""
    if len(by_type) != 1 or len(recent) != 1:
        return False
    (t, v), (_, u, p, _) = by_type[0], recent[0]
    return t == u and _D.pack(v) == _D.pack(p)


def decode_explanation(raw: bytes, model: Model) -> Explanation:
    """Inverse of :func:`encode_explanation`: :class:`~scoring.errors.UnknownFormat` for
    bytes of another format, :class:`~scoring.errors.InvalidState` for bytes that are not
    a whole format-3 or format-4 explanation or hold a type index ``model`` does not have.
    The ids of format 4 come back as :func:`id_fingerprint` gives them."""
    fmt = raw[0] if raw else None
    if fmt not in (EXPLANATION_FORMAT, FINGERPRINTS_FORMAT):
        raise UnknownFormat("explanation", fmt, EXPLANATION_FORMAT, FINGERPRINTS_FORMAT)
    prints = fmt == FINGERPRINTS_FORMAT
    names = model.event_type_names
    try:
        head = _HEAD_WIDE if len(raw) > 1 and raw[1] & _WIDE else _HEAD
        _, widths, at, n_types, n = head.unpack_from(raw)
        if widths & ~_WIDTHS or (prints and widths & _LENGTH2):
            raise ValueError(f"format {fmt} widths {widths:#x}")
        if widths & _ONE and (n_types, n) != (0, 1):
            raise ValueError(f"{n_types} sums and {n} events with the one-event flag")
        layout = _layout(widths, n_types, n, prints)
        fields = layout.unpack_from(raw, head.size)
        m = 2 * n_types
        by_type = tuple(zip([names[i] for i in fields[:n_types]], fields[n_types:m], strict=True))
        pos = head.size + layout.size
        ids: list[str] = []
        if prints:
            tail, step = fields[-1].hex(), 2 * FINGERPRINT_BYTES
            ids = [_PREFIX + tail[k : k + step] for k in range(0, len(tail), step)]
        else:
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
        return Explanation(float(at), by_type, recent)
    except IndexError:
        raise InvalidState(f"explanation: an event type index over {len(names) - 1}") from None
    except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidState(f"explanation: {exc}") from None

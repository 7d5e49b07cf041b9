"""The previous release's readers and writers of the two formats this release changed,
copied unchanged from it: its customer record (format 1, text header) and its
explanation (format 3 only, event ids as sent).

Tests check against them that what this release writes with
``ENGAGEMENT_WRITE_FORMAT=previous`` is read by a worker of the previous release, byte for
byte what that release would have written. Do not "fix" or modernise this module: it
stands for code that is already deployed.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache

from scoring.codec.widths import SIGNED, signed_code
from scoring.errors import InvalidState, UnknownFormat
from scoring.explain import Explanation
from scoring.model import Model
from stream_app.store.records import CustomerRecord

# ------------------------------------------------------------------ customer record


def encode_record(
    version: int,
    marks: Mapping[str, int],
    state: bytes,
    explain: bytes | None = None,
    token: str = "",
) -> bytes:
    """Pack a record (``token``: its fence token, by default the bare version).

    >>> encode_record(3, {"i1": 40}, b"[1]", token="3.ab1")
    b'3.ab1 i1=40 3 [1]'
    >>> encode_record(3, {}, b"[1]", b"[2]")
    b'3 - 3 [1][2]'
    """
    mark_text = ",".join(f"{k}={v}" for k, v in sorted(marks.items())) or "-"
    head = token or str(version)
    return f"{head} {mark_text} {len(state)} ".encode() + state + (explain or b"")


def decode_record(raw: bytes) -> CustomerRecord:
    """Unpack a record written by :func:`encode_record` (raises on anything else).

    >>> decode_record(b'3.ab1 i1=40,r1=2 3 [1][2]')
    CustomerRecord(version=3, marks={'i1': 40, 'r1': 2}, state=b'[1]', explain=b'[2]', token='3.ab1', fault=None)

    Anything else, such as ``"<version> <marks> <state>"`` with no state length, is refused:

    >>> decode_record(b'3 - [1]')
    Traceback (most recent call last):
    ...
    ValueError: record has no state length: not a record this release writes
    """  # noqa: E501
    head, mark_text, rest = raw.split(b" ", 2)
    token = head.decode("ascii")
    version = int(token.split(".", 1)[0])
    marks: dict[str, int] = {}
    if mark_text != b"-":
        for item in mark_text.decode().split(","):
            name, offset = item.split("=")
            marks[name] = int(offset)
    if not rest[:1].isdigit():
        raise ValueError("record has no state length: not a record this release writes")
    length, body = rest.split(b" ", 1)
    n = int(length)
    if len(body) < n:
        raise ValueError(f"record state is {len(body)} bytes, its header says {n}")
    return CustomerRecord(version, marks, body[:n], body[n:] or None, token=token)


# ------------------------------------------------------------------ explanation

#: The version byte of an explanation: the first byte of :func:`encode_explanation`'s.
EXPLANATION_FORMAT = 3

_LENGTH2 = 4
_POINTS32 = 8
_ONE = 16  # by_type is the one recent event's (type, points), to the bit: not stored
_WIDE = 32  # 4-byte counts and 2-byte type indexes
_WIDTHS = 63
_D = struct.Struct("<d")
_HEAD = struct.Struct("<BBqBB")
_HEAD_WIDE = struct.Struct("<BBqII")
_LEAD = bytes([EXPLANATION_FORMAT])
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
def _layout(widths: int, n_types: int, n_recent: int) -> struct.Struct:
    offset = SIGNED[widths & 3]
    kind = "H" if widths & _WIDE else "B"
    points = "f" if widths & _POINTS32 else "d"
    length = "H" if widths & _LENGTH2 else "B"
    n = n_recent
    return struct.Struct(f"<{n_types}{kind}{n_types}d{n}{offset}{n}{kind}{n}{points}{n}{length}")


def encode_explanation(expl: Explanation, model: Model) -> bytes:
    """Format-3 bytes of ``expl``; types ``model`` does not have are left out.

    Raises :class:`~scoring.errors.InvalidState` for what the format cannot hold (no
    explanation :func:`~scoring.explain.explain_add` builds): a reference time that is
    not an integral number of ms within 64 bits, an event id over 65,535 bytes.
    """
    at = expl.at_ms
    if not (at.is_integer() and -_I64 <= at < _I64):
        raise InvalidState(f"explanation: at={at!r} is not an integral number of ms")
    index = model.plan.type_index
    try:
        return _encode(int(at), expl.by_type, expl.recent, index)
    except KeyError:  # a type the model no longer has: leave it out
        by_type = [(t, v) for t, v in expl.by_type if t in index]
        recent = [r for r in expl.recent if r[1] in index]
        return _encode(int(at), by_type, recent, index)


def _encode(
    at: int, by_type: Sequence[Typed], recent: Sequence[Recent], index: Mapping[str, int]
) -> bytes:
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
        if max(lengths) > 0xFF:
            widths |= _LENGTH2
        if _f32_exact(points):
            widths |= _POINTS32
        if _is_one(by_type, recent):
            widths |= _ONE
            by_type = ()
    n_types, n = len(by_type), len(recent)
    fields = [
        *[index[t] for t, _ in by_type],
        *[v for _, v in by_type],
        *offsets,
        *kinds,
        *points,
        *lengths,
    ]
    tail = b"".join(ids)
    try:
        head = _HEAD.pack(EXPLANATION_FORMAT, widths, at, n_types, n)
        return head + _layout(widths, n_types, n).pack(*fields) + tail
    except struct.error:  # more than 255 types or events, a type index over 255
        widths |= _WIDE
    try:
        head = _HEAD_WIDE.pack(EXPLANATION_FORMAT, widths, at, n_types, n)
        return head + _layout(widths, n_types, n).pack(*fields) + tail
    except struct.error as exc:
        raise InvalidState(f"explanation does not fit format 3: {exc}") from None


def _is_one(by_type: Sequence[Typed], recent: Sequence[Recent]) -> bool:
    """A customer's first event: the sum of its type is its points, bit for bit."""
    if len(by_type) != 1 or len(recent) != 1:
        return False
    (t, v), (_, u, p, _) = by_type[0], recent[0]
    return t == u and _D.pack(v) == _D.pack(p)


def decode_explanation(raw: bytes, model: Model) -> Explanation:
    """Inverse of :func:`encode_explanation`: :class:`~scoring.errors.UnknownFormat` for
    bytes of another format, :class:`~scoring.errors.InvalidState` for bytes that are not
    a whole format-3 explanation or hold a type index ``model`` does not have."""
    if raw[:1] != _LEAD:
        raise UnknownFormat("explanation", raw[0] if raw else None, EXPLANATION_FORMAT)
    names = model.event_type_names
    try:
        head = _HEAD_WIDE if len(raw) > 1 and raw[1] & _WIDE else _HEAD
        _, widths, at, n_types, n = head.unpack_from(raw)
        if widths & ~_WIDTHS:
            raise ValueError(f"format {EXPLANATION_FORMAT} widths {widths:#x}")
        if widths & _ONE and (n_types, n) != (0, 1):
            raise ValueError(f"{n_types} sums and {n} events with the one-event flag")
        layout = _layout(widths, n_types, n)
        fields = layout.unpack_from(raw, head.size)
        m = 2 * n_types
        by_type = tuple(zip([names[i] for i in fields[:n_types]], fields[n_types:m], strict=True))
        pos = head.size + layout.size
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
        return Explanation(float(at), by_type, recent)
    except IndexError:
        raise InvalidState(f"explanation: an event type index over {len(names) - 1}") from None
    except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidState(f"explanation: {exc}") from None

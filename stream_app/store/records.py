"""What the worker writes to Redis and reads back, as plain values (no Redis client here).

A customer record is ``b"<version>.<write id> "`` then binary (record format 2):

* ``version`` counts writes; ``write id`` is unique to the write that made the record
  (this process's random epoch and a counter). A write names the record it read, by
  both, and loses if another writer got there first (``lua/cas_write.lua``). That fences
  a worker that lost its partitions in a rebalance: it cannot overwrite newer state.
  The write id keeps the fence true across a Redis failover that lost acknowledged
  writes: the version numbers then go back and are handed out again, but no record
  written afterwards can carry the id of one that was lost, so a writer that read a
  lost record cannot match its successor. This text head, up to the first space, is
  all the Lua scripts read of a record.
* the format byte ``0x02``;
* the **marks**: their count, then for each a name (one length byte, ASCII) and an
  offset, for each source partition the highest offset already applied to this
  customer, so a redelivered message changes nothing (``i3``, ``r3``; ``m``: the model
  registry's epoch);
* the length of the state, then ``state``: :func:`scoring.encode_state`'s bytes;
* then ``explanation`` (possibly empty), :func:`scoring.encode_explanation`'s bytes:
  kept in the same value, it costs no key of its own and no extra read or write.

Counts, offsets and the length are unsigned LEB128 varints (7 bits a byte, low first).
Records of format 1, ``b"<token> <marks> <state length> <state><explanation>"`` with
the marks as text (``i3=1042,r3=88``, or ``-``), are still read; the next write of the
customer stores format 2. Format 1 is also written on request
(``ENGAGEMENT_WRITE_FORMAT=previous``: ``record_format`` here), for a rolling upgrade
from the previous release, which reads format 1 only.

:class:`Write` is one fenced write of a record; :data:`Command` a raw Redis command queued
on the write pipeline.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

ScriptArg = bytes | str | int | float
#: A raw Redis command, e.g. ``("ZADD", key, 0, member)``, queued on a write pipeline.
Command = tuple[ScriptArg, ...]

#: The rule segments one customer is in (what the member sets hold of it).
Membership = frozenset[str]

#: Digits of a write id: base64url (no space, no dot: the Lua scripts split on both).
_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _digits(n: int) -> str:
    """``n`` (>= 0) in :data:`_DIGITS`, most significant first.

    >>> _digits(0), _digits(63), _digits(64)
    ('A', '_', 'BA')
    """
    out = _DIGITS[n & 63]
    while n >= 64:
        n >>= 6
        out = _DIGITS[n & 63] + out
    return out


#: This process's write-id epoch: 42 random bits as 7 digits, so no two processes hand
#: out the same ids.
_EPOCH = _digits(secrets.randbits(42) | 1 << 42)[1:]
_WRITES = itertools.count(1)

#: (reason, detail) of a record that cannot be used: ``corrupt_state`` or ``store_rejected``.
RecordFault = tuple[str, str]


def new_token(version: int) -> str:
    """A fresh fence token for a record at ``version``: ``"<version>.<write id>"``.

    >>> a, b = new_token(3), new_token(3)
    >>> a.startswith("3.") and a != b
    True
    """
    return f"{version}.{_EPOCH}{_digits(next(_WRITES))}"


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """What Redis holds for one customer (version 0 and no state: unknown customer).

    ``token`` is the record's fence token as stored (empty for an unknown customer, the
    bare version for records of earlier releases); ``fault`` says why a record cannot be
    used at all (it does not decode, or its key holds another Redis type).
    """

    version: int = 0
    marks: Mapping[str, int] = field(default_factory=dict)
    state: bytes | None = None
    explain: bytes | None = None
    token: str = ""
    fault: RecordFault | None = None

    @property
    def fence(self) -> str:
        """What a write of this record must name as read (``"0"``: no record)."""
        return self.token or str(self.version)


#: The format byte of a record, after its fence token and a space.
RECORD_FORMAT = 2
#: The record format of the previous release (text header, no format byte).
PREVIOUS_RECORD_FORMAT = 1
_FORMAT2 = b" \x02"


def encode_record(
    version: int,
    marks: Mapping[str, int],
    state: bytes,
    explain: bytes | None = None,
    token: str = "",
    *,
    record_format: int = RECORD_FORMAT,
) -> bytes:
    """Pack a record, format 2 (``token``: its fence token, by default the bare version),
    or format 1 with ``record_format=1``.

    >>> encode_record(3, {"i1": 40}, b"[1]", token="3.ab1")
    b'3.ab1 \\x02\\x01\\x02i1(\\x03[1]'
    >>> encode_record(3, {}, b"[1]", b"[2]")
    b'3 \\x02\\x00\\x03[1][2]'
    >>> encode_record(3, {"i1": 40}, b"[1]", b"[2]", "3.ab1", record_format=1)
    b'3.ab1 i1=40 3 [1][2]'
    """
    if record_format == PREVIOUS_RECORD_FORMAT:
        return _encode_format1(token or str(version), marks, state, explain)
    if record_format != RECORD_FORMAT:
        raise ValueError(f"record format {record_format} is not written (only 1 and 2)")
    out = bytearray((token or str(version)).encode("ascii"))
    out += _FORMAT2
    _varint(out, len(marks))
    for name, offset in sorted(marks.items()):
        raw = name.encode("ascii")
        if not 0 < len(raw) < 0x100:
            raise ValueError(f"mark name {name!r}: 1 to 255 ASCII bytes")
        out.append(len(raw))
        out += raw
        _varint(out, offset)
    _varint(out, len(state))
    out += state
    if explain:
        out += explain
    return bytes(out)


def _encode_format1(
    head: str, marks: Mapping[str, int], state: bytes, explain: bytes | None
) -> bytes:
    """A format-1 record, byte for byte as the previous release wrote it (``head``: the
    fence token)."""
    for name in marks:
        if not name or not name.isascii() or any(c in name for c in " ,="):
            raise ValueError(f"mark name {name!r}: ASCII, without spaces, commas or '='")
    mark_text = ",".join(f"{k}={v}" for k, v in sorted(marks.items())) or "-"
    return f"{head} {mark_text} {len(state)} ".encode() + state + (explain or b"")


def _varint(out: bytearray, n: int) -> None:
    """Append ``n`` (>= 0) as an unsigned LEB128 varint.

    >>> b = bytearray(); _varint(b, 300); bytes(b)
    b'\\xac\\x02'
    """
    if n < 0:
        raise ValueError(f"a record cannot hold the negative number {n}")
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``raw[pos:]`` and the position after it (IndexError past the end)."""
    byte = raw[pos]
    if byte < 0x80:
        return byte, pos + 1
    n, shift = 0, 0
    while True:
        byte = raw[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint of the record runs over 64 bits")


def decode_record(raw: bytes) -> CustomerRecord:
    """Unpack a record written by :func:`encode_record`, or of format 1 (raises on
    anything else).

    >>> decode_record(encode_record(3, {"i1": 40, "r1": 2}, b"[1]", b"[2]", "3.ab1"))
    CustomerRecord(version=3, marks={'i1': 40, 'r1': 2}, state=b'[1]', explain=b'[2]', token='3.ab1', fault=None)
    >>> decode_record(b'3.ab1 i1=40,r1=2 3 [1][2]') == decode_record(
    ...     encode_record(3, {"i1": 40, "r1": 2}, b"[1]", b"[2]", "3.ab1"))
    True

    Anything else, such as ``"<version> <marks> <state>"`` with no state length, is refused:

    >>> decode_record(b'3 - [1]')
    Traceback (most recent call last):
    ...
    ValueError: record has no state length: not a record this release writes
    """  # noqa: E501
    head, rest = raw.split(b" ", 1)
    token = head.decode("ascii")
    version = int(token.split(".", 1)[0])
    if rest[:1] != b"\x02":
        return _decode_format1(token, version, rest)
    try:
        count, pos = _read_varint(rest, 1)
        marks: dict[str, int] = {}
        for _ in range(count):
            end = pos + 1 + rest[pos]
            name = rest[pos + 1 : end].decode("ascii")
            if end > len(rest):
                raise IndexError
            marks[name], pos = _read_varint(rest, end)
        n, pos = _read_varint(rest, pos)
    except IndexError:
        raise ValueError("record header runs past its end") from None
    if len(rest) - pos < n:
        raise ValueError(f"record state is {len(rest) - pos} bytes, its header says {n}")
    end = pos + n
    return CustomerRecord(version, marks, rest[pos:end], rest[end:] or None, token=token)


def _decode_format1(token: str, version: int, rest: bytes) -> CustomerRecord:
    """The rest of a format-1 record: ``<marks> <state length> <state><explanation>``."""
    mark_text, rest = rest.split(b" ", 1)
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


def read_record(raw: bytes) -> CustomerRecord:
    """:func:`decode_record`, or a record with a ``corrupt_state`` fault if it does not
    decode (never raises)."""
    try:
        return decode_record(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return CustomerRecord(fault=("corrupt_state", f"the stored record does not decode: {exc}"))


@dataclass(frozen=True, slots=True)
class LifecycleStatus:
    """What Redis says of a customer with no record: erased (``suppressed``), or merged
    into ``into`` (``alias``)."""

    kind: Literal["suppressed", "alias"]
    into: str | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """One fenced record write: the record read, and the new record's parts."""

    customer_id: str
    read_version: int
    marks: Mapping[str, int]
    state: bytes
    due_partition: int = 0
    due_at_ms: float | None = None  # the new state's next decay crossing
    explain: bytes | None = None  # stored in the record, after the state
    # (tier of the record read, "" for a new customer; tier of the new record, "" when
    # tiers are not counted): the write moves the customer between the tier counts
    tier_move: tuple[str, str] = ("", "")
    #: the fence token of the record read (:attr:`CustomerRecord.fence`); empty: only its
    #: version is known, and the write is fenced by the version alone
    read_token: str = ""
    #: the new record's fence token (made here, unique to this write)
    token: str = ""

    def __post_init__(self) -> None:
        if not self.token:
            object.__setattr__(self, "token", new_token(self.read_version + 1))

    @property
    def fence(self) -> str:
        return self.read_token or str(self.read_version)


def nps_field(day: str, tier: str, category: str) -> str:
    """The counter name of one (day, tier, category); tier ``*`` is the overall count."""
    return f"{day}|{tier}|{category}"


def nps_fields(day: str, tier: str, category: str) -> Iterable[str]:
    """Both counters one response increments: overall and by tier."""
    return (nps_field(day, "*", category), nps_field(day, tier, category))

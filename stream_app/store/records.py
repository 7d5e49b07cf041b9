"""What the worker writes to Redis and reads back, as plain values (no Redis client here).

A customer record is ``b"<version> <marks> <state length> <state><explanation>"``
(see :mod:`stream_app.store.state` for what each part is for); :class:`Write` is one
fenced write of it; :data:`Command` a raw Redis command queued on the write pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ScriptArg = bytes | str | int | float
#: A raw Redis command, e.g. ``("ZADD", key, 0, member)``, queued on a write pipeline.
Command = tuple[ScriptArg, ...]

#: The rule segments one customer is in (what the member sets hold of it).
Membership = frozenset[str]


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """What Redis holds for one customer (version 0 and no state: unknown customer)."""

    version: int = 0
    marks: Mapping[str, int] = field(default_factory=dict)
    state: bytes | None = None
    explain: bytes | None = None


def encode_record(
    version: int, marks: Mapping[str, int], state: bytes, explain: bytes | None = None
) -> bytes:
    """Pack a record.

    >>> encode_record(3, {"i1": 40}, b"[1]")
    b'3 i1=40 3 [1]'
    >>> encode_record(3, {}, b"[1]", b"[2]")
    b'3 - 3 [1][2]'
    """
    mark_text = ",".join(f"{k}={v}" for k, v in sorted(marks.items())) or "-"
    return f"{version} {mark_text} {len(state)} ".encode() + state + (explain or b"")


def decode_record(raw: bytes) -> CustomerRecord:
    """Unpack a record written by :func:`encode_record`.

    >>> decode_record(b'3 i1=40,r1=2 3 [1][2]')
    CustomerRecord(version=3, marks={'i1': 40, 'r1': 2}, state=b'[1]', explain=b'[2]')

    Records of release 0.1 (``"<version> <marks> <state>"``, the explanation in a key
    of its own) still read, without their explanation:

    >>> decode_record(b'3 - [1]')
    CustomerRecord(version=3, marks={}, state=b'[1]', explain=None)
    """
    version, mark_text, rest = raw.split(b" ", 2)
    marks: dict[str, int] = {}
    if mark_text != b"-":
        for item in mark_text.decode().split(","):
            name, offset = item.split("=")
            marks[name] = int(offset)
    if not rest[:1].isdigit():  # a 0.1 record: the state is JSON, it starts with "["
        return CustomerRecord(int(version), marks, rest)
    length, body = rest.split(b" ", 1)
    n = int(length)
    return CustomerRecord(int(version), marks, body[:n], body[n:] or None)


@dataclass(frozen=True, slots=True)
class Write:
    """One fenced record write: the version read, and the new record's parts."""

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


def nps_field(day: str, tier: str, category: str) -> str:
    """The counter name of one (day, tier, category); tier ``*`` is the overall count."""
    return f"{day}|{tier}|{category}"


def nps_fields(day: str, tier: str, category: str) -> Iterable[str]:
    """Both counters one response increments: overall and by tier."""
    return (nps_field(day, "*", category), nps_field(day, tier, category))

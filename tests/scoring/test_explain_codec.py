"""The explanation codec: exact round trips, the JSON formats of earlier versions refused,
clear errors on bad bytes."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring import (
    Event,
    Explanation,
    InvalidState,
    UnknownFormat,
    decay_factor,
    decode_explanation,
    encode_explanation,
    explain_add,
    load_default_model,
    parse_model,
)
from scoring.codec.explain import EXPLANATION_FORMAT, FINGERPRINTS_FORMAT, id_fingerprint
from scoring.state import fingerprint

MODEL = load_default_model()
TYPES = sorted(MODEL.event_types)
T0 = 1_764_000_000_000

events = st.lists(
    st.tuples(
        st.integers(0, 10**7),  # event id number
        st.sampled_from(TYPES),
        st.integers(-(10**10), 10**10),  # time offset, ms
        st.booleans(),  # capped: applied with 0 points
    ),
    min_size=1,
    max_size=30,
)


def build(evs: list[tuple[int, str, int, bool]], keep: int = 10) -> Explanation:
    expl = None
    for n, etype, dt, capped in evs:
        ev = Event(f"evt-{n}", "c1", etype, T0 + dt, None)
        points = 0.0 if capped else MODEL.event_types[etype].points
        expl = explain_add(expl, ev, points, MODEL, keep=keep)
    assert expl is not None
    return expl


def format_2(expl: Explanation) -> bytes:
    """What the fourth round wrote (JSON, types by index, times relative to ``at``)."""
    index, base = {t: i for i, t in enumerate(MODEL.event_type_names)}, int(expl.at_ms)
    return orjson.dumps(
        [
            2,
            base,
            [[index[t], v] for t, v in expl.by_type],
            [[base - ts, index[t], p, e] for ts, t, p, e in expl.recent],
        ]
    )


def format_1(expl: Explanation) -> bytes:
    """What release 0.1 and the previous change wrote."""
    return orjson.dumps(
        [expl.at_ms, [list(p) for p in expl.by_type], [list(r) for r in expl.recent]]
    )


@settings(max_examples=200, deadline=None)
@given(events, st.integers(0, 12))
def test_explanations_round_trip_exactly(evs: list[tuple[int, str, int, bool]], keep: int) -> None:
    expl = build(evs, keep)
    raw = encode_explanation(expl, MODEL)
    assert raw[0] == EXPLANATION_FORMAT == 3
    assert decode_explanation(raw, MODEL) == expl
    for old in (format_1(expl), format_2(expl)):  # the JSON formats are refused
        with pytest.raises(UnknownFormat, match="explanation: format 91 is not read"):
            decode_explanation(old, MODEL)
    assert len(raw) <= len(format_2(expl)) < len(format_1(expl))


ids = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=128)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(ids, st.integers(-(2**62), 2**62), st.floats(allow_nan=False)), max_size=12)
)
def test_any_ids_times_and_points_round_trip(recent: list[tuple[str, int, float]]) -> None:
    """UTF-8 ids up to 128 characters (up to 512 bytes: two-byte lengths), offsets of every
    width, points float32 can and cannot hold."""
    entries = tuple(sorted(((T0 + dt, "email_open", p, e) for e, dt, p in recent), reverse=True))
    expl = Explanation(float(T0), (("email_open", 1.5),), entries)
    raw = encode_explanation(expl, MODEL)
    assert raw[0] == 3
    assert decode_explanation(raw, MODEL) == expl


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_float_round_trips(v: float) -> None:
    expl = Explanation(float(T0), (("email_open", v),), ((T0, "email_open", v, "e1"),))
    assert decode_explanation(encode_explanation(expl, MODEL), MODEL) == expl


@given(st.floats(-1e15, 1e15, allow_nan=False).filter(lambda x: not x.is_integer()))
def test_a_non_integral_time_is_refused_clearly(at: float) -> None:
    """No explanation ``explain_add`` builds has one (event times are integral ms)."""
    expl = Explanation(at, (("email_open", 1.0),), ((T0, "email_open", 1.0, "e1"),))
    with pytest.raises(InvalidState, match="not an integral number of ms"):
        encode_explanation(expl, MODEL)


@pytest.mark.parametrize("value", [-0.0, 0.0, 3.0, 2.0**60, -(2.0**53), 0.1])
def test_points_keep_their_exact_value_and_the_sign_of_zero(value: float) -> None:
    expl = Explanation(float(T0), (("email_open", value),), ((T0, "email_open", value, "e"),))
    back = decode_explanation(encode_explanation(expl, MODEL), MODEL)
    assert back == expl
    assert repr(back.recent[0][2]) == repr(value) and repr(back.by_type[0][1]) == repr(value)


def test_types_the_model_no_longer_has_are_left_out() -> None:
    expl = Explanation(
        float(T0),
        (("email_open", 1.0), ("retired_type", 2.0)),
        ((T0, "retired_type", 2.0, "old"), (T0 - 5, "email_open", 1.0, "new")),
    )
    back = decode_explanation(encode_explanation(expl, MODEL), MODEL)
    assert back.by_type == (("email_open", 1.0),)
    assert back.recent == ((T0 - 5, "email_open", 1.0, "new"),)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[2,1,[[99,1.0]],[]]",
        b"[7,1,[],[]]",
        b"{}",
        b"\x00\x00",
        b"\x02",
        b"\x05" + b"\x00" * 12,
    ],
)
def test_any_other_format_is_refused(raw: bytes) -> None:
    with pytest.raises(UnknownFormat, match=f"explanation: format {raw[0]} is not read") as info:
        decode_explanation(raw, MODEL)
    assert info.value.found == raw[0]
    assert isinstance(info.value, InvalidState)  # what a caller catches
    with pytest.raises(UnknownFormat, match="no bytes"):
        decode_explanation(b"", MODEL)


def with_prints(expl: Explanation) -> Explanation:
    """``expl`` with each event id as format 4 gives it back."""
    recent = tuple((ts, t, p, id_fingerprint(e)) for ts, t, p, e in expl.recent)
    return Explanation(expl.at_ms, expl.by_type, recent)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(ids, st.integers(-(2**62), 2**62), st.floats(allow_nan=False)), max_size=12)
)
def test_format_4_keeps_each_id_as_its_fingerprint(recent: list[tuple[str, int, float]]) -> None:
    entries = tuple(sorted(((T0 + dt, "email_open", p, e) for e, dt, p in recent), reverse=True))
    expl = Explanation(float(T0), (("email_open", 1.5),), entries)
    raw = encode_explanation(expl, MODEL, fingerprints=True)
    assert raw[0] == FINGERPRINTS_FORMAT == 4
    back = decode_explanation(raw, MODEL)
    assert back == with_prints(expl)
    for (_, _, _, e), (_, _, _, shown) in zip(entries, back.recent, strict=True):
        assert shown == "fp:" + fingerprint(e).hex()  # the dedup memory's digest
    # decoded and encoded again (what every batch does): the same bytes, in either format
    assert encode_explanation(back, MODEL, fingerprints=True) == raw
    assert decode_explanation(encode_explanation(back, MODEL), MODEL) == back
    # never larger than format 3 by more than the fingerprints' extra bytes
    full = encode_explanation(expl, MODEL)
    assert len(raw) <= len(full) + 5 * len(entries)


@settings(max_examples=100, deadline=None)
@given(events, st.integers(1, 12))
def test_format_3_records_go_on_in_format_4(
    evs: list[tuple[int, str, int, bool]], keep: int
) -> None:
    """A record written with full ids is read, and its next write keeps fingerprints;
    with the benchmark's ids (``evt-<n>``, 5-11 bytes) that is never larger."""
    expl = build(evs, keep)
    old = encode_explanation(expl, MODEL)
    assert old[0] == EXPLANATION_FORMAT
    read = decode_explanation(old, MODEL)
    ev = Event("evt-next", "c1", "email_open", T0, None)
    nxt = explain_add(read, ev, 1.0, MODEL, keep=keep)
    raw = encode_explanation(nxt, MODEL, fingerprints=True)
    assert decode_explanation(raw, MODEL) == with_prints(nxt)
    assert len(raw) <= len(encode_explanation(nxt, MODEL))


def test_an_id_shaped_like_a_fingerprint_keeps_its_digits() -> None:
    assert id_fingerprint("fp:00ff00ff00ff") == "fp:00ff00ff00ff"
    assert id_fingerprint("fp:00FF00FF00FF") == "fp:" + fingerprint("fp:00FF00FF00FF").hex()
    assert id_fingerprint("fp:00ff00ff00f") == "fp:" + fingerprint("fp:00ff00ff00f").hex()


def test_a_format_4_explanation_cut_short_is_refused() -> None:
    ev = Event("e1", "c1", "email_open", T0, None)
    raw = encode_explanation(explain_add(None, ev, 3.0, MODEL), MODEL, fingerprints=True)
    for cut in range(1, len(raw)):
        with pytest.raises(InvalidState):
            decode_explanation(raw[:cut], MODEL)
    with pytest.raises(InvalidState, match="bytes after the ids"):
        decode_explanation(raw + b"x", MODEL)


def _one(event_id: str = "e1") -> bytes:
    ev = Event(event_id, "c1", "email_open", T0, None)
    return encode_explanation(explain_add(None, ev, 3.0, MODEL), MODEL)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (_one()[:-1], "ids run past the end"),
        (_one() + b"x", "1 bytes after the ids"),
        (_one()[:11], "explanation"),  # the header cut short
        (_one()[:20], "explanation"),  # the fields cut short
        (bytes([3, 0x40]) + _one()[2:], "widths 0x40"),
        (bytes([3, 0x20]) + _one()[2:], "explanation"),  # wide: the counts cut short
        (_one()[:13] + bytes([200]) + _one()[14:], "index over"),  # type index 200
        (_one()[:10] + bytes([1]) + _one()[11:], "one-event flag"),  # and a stored sum
        (_one("\u00e9")[:-2] + b"\xff\xfe", "explanation"),  # not UTF-8
    ],
)
def test_bad_binary_bytes_raise_invalid_state(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidState, match=why):
        decode_explanation(raw, MODEL)


@pytest.mark.parametrize(
    ("by_type", "stored"),
    [
        ((("email_open", 3.0),), False),  # a first event: its sum is its points
        ((("email_open", 2.9999999999999996),), True),  # not to the bit
        ((("email_open", 0.0),), True),  # the points are -0.0: the sign differs
        ((("email_click", 3.0),), True),  # another type
    ],
)
def test_a_first_events_sum_is_not_stored_twice(
    by_type: tuple[tuple[str, float]], stored: bool
) -> None:
    points = -0.0 if by_type[0][1] == 0.0 else 3.0
    expl = Explanation(float(T0), by_type, ((T0, "email_open", points, "e1"),))
    raw = encode_explanation(expl, MODEL)
    assert decode_explanation(raw, MODEL) == expl
    assert repr(decode_explanation(raw, MODEL).by_type) == repr(by_type)
    assert len(raw) == 12 + 7 + 2 + 9 * stored


def test_more_than_255_events_or_types_are_held_wide() -> None:
    many = tuple((T0 - n, "email_open", 1.0, f"e{n}") for n in range(300))  # > 255 events
    expl = Explanation(float(T0), (("email_open", 300.0),), many)
    raw = encode_explanation(expl, MODEL)
    assert raw[:2] == bytes([3, 0x20 | 0x08 | 1])  # wide, float32 points, 2-byte offsets
    assert decode_explanation(raw, MODEL) == expl
    # a model of 300 event types: a type index over 255
    types = {f"t{i:03d}": {"points": 1, "dimension": "d"} for i in range(300)}
    big = parse_model({"model": {"name": "big", "version": 1, "half_life_days": 1},
                       "tiers": {"cold": 0}, "events": types})  # fmt: skip
    expl = Explanation(float(T0), (("t299", 2.0), ("t000", 1.0)), ((T0, "t299", 2.0, "e1"),))
    raw = encode_explanation(expl, big)
    assert raw[1] & 0x20
    assert decode_explanation(raw, big) == expl
    narrow = Explanation(float(T0), (("t001", 1.0),), ((T0, "t000", 1.0, "e1"),))
    assert not encode_explanation(narrow, big)[1] & 0x20  # only when needed


def test_a_one_event_explanation_is_about_half_the_old_size() -> None:
    ev = Event("bench-42-123456", "cust-012345", "email_open", T0 + 123, None)
    expl = explain_add(None, ev, 3.0, MODEL)
    new, old = encode_explanation(expl, MODEL), format_1(expl)
    assert len(new) <= 0.6 * len(old), (new, old)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(0, 12))
def test_explain_add_keeps_the_newest_events_and_the_decayed_sums(
    evs: list[tuple[int, str, int, bool]], keep: int
) -> None:
    """Whatever the arrival order: the kept events are the newest ``keep`` (ties by
    type, points, id), the sums are every event's points decayed to the newest time."""
    expl = build(evs, keep)
    entries = [
        (T0 + dt, t, 0.0 if capped else MODEL.event_types[t].points, f"evt-{n}")
        for n, t, dt, capped in evs
    ]
    assert expl.recent == tuple(sorted(entries, reverse=True)[:keep])
    at = max(e[0] for e in entries)
    assert expl.at_ms == at
    want: dict[str, float] = {}
    for ts, t, pts, _ in entries:
        half_life = MODEL.half_life_ms(MODEL.event_types[t].dimension)
        want[t] = want.get(t, 0.0) + pts * decay_factor(at - ts, half_life)
    assert [t for t, _ in expl.by_type] == sorted(want)
    for t, v in expl.by_type:
        assert math.isclose(v, want[t], rel_tol=1e-9, abs_tol=1e-12), (t, v, want[t])

"""Customer state: values over time, the compact encoding and its checks."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.apply import apply
from scoring.codec.state import STATE_FORMAT, decode_state, encode_state
from scoring.errors import InvalidState, UnknownFormat
from scoring.events import Event
from scoring.model import Model
from scoring.state import (
    FINGERPRINT_BYTES,
    CustomerState,
    new_state,
    segment_names,
    tier_name,
    values_at,
)

T0 = 1_699_920_000_000
DAY = 86_400_000


def test_new_state() -> None:
    state = new_state()
    assert state.is_new and state.clock_ms == -math.inf
    assert (state.tier, state.segments, state.events_applied) == (0, 0, 0)
    assert state.nps_category is None and state.last_event_ms is None


def test_values_of_a_new_state_are_zero(model: Model) -> None:
    v = values_at(new_state(), model, T0)
    assert v.score == 0.0 and dict(v.dimensions) == {"a": 0.0, "b": 0.0, "c": 0.0}


def test_values_at_runs_the_formula_both_ways(model: Model) -> None:
    state = CustomerState(clock_ms=float(T0), values=(8.0, -6.0, 1.0))
    assert dict(values_at(state, model, T0 + 3 * DAY).dimensions) == {
        "a": 1.0,
        "b": -3.0,
        "c": 2 ** (-0.3),
    }
    back = values_at(state, model, T0 - DAY)  # "as of" before the clock: the values grow
    assert back.dimensions["a"] == 16.0
    assert values_at(state, model, T0).score == 3.0


def test_names(model: Model) -> None:
    state = CustomerState(clock_ms=0.0, tier=1, segments=0b10101)
    assert state.tier_name(model) == tier_name(state, model) == "warm"
    assert segment_names(state, model) == ("a_high", "quiet_pa", "active")


def random_history(model: Model, rng: random.Random, n: int) -> CustomerState:
    types = sorted(model.event_types)
    state = None
    for i in range(n):
        kind = rng.choice(types)
        ts = T0 + rng.randrange(20 * DAY)
        score = rng.randrange(11) if kind == "nps_response" else None
        state = apply(state, Event(f"evt-{i}-{rng.random()}", "c", kind, ts, score), model).state
    return state or new_state()


@pytest.mark.parametrize("seed", range(20))
def test_round_trip_of_real_histories(model: Model, default_model: Model, seed: int) -> None:
    rng = random.Random(seed)
    for m in (model, default_model):
        state = random_history(m, rng, rng.randrange(1, 40))
        assert decode_state(encode_state(state), m) == state


@st.composite
def states(draw: st.DrawFn, model: Model) -> CustomerState:
    if draw(st.booleans()) and draw(st.booleans()):
        return new_state()
    last = draw(st.integers(0, 253_402_300_799_999))
    clock = draw(st.one_of(st.just(float(last)), st.floats(last, last + 1e10)))
    opt_time = st.one_of(st.none(), st.integers(0, last))
    n_ids = draw(st.integers(0, 20))
    return CustomerState(
        clock_ms=clock,
        values=draw(
            st.one_of(
                st.just(()),
                st.tuples(*[st.floats(allow_nan=False, allow_infinity=False)] * 3),
            )
        ),
        tier=draw(st.integers(0, len(model.tiers) - 1)),
        segments=draw(st.integers(0, 2 ** len(model.segments) - 1)),
        last_seen=draw(st.one_of(st.just(()), st.tuples(*[opt_time] * len(model.tracked)))),
        nps_score=draw(st.one_of(st.none(), st.integers(0, 10))),
        nps_at_ms=draw(opt_time),
        caps=tuple(
            draw(
                st.lists(
                    st.tuples(
                        st.integers(0, len(model.event_type_names) - 1),
                        st.integers(last // DAY - 3, last // DAY),
                        st.integers(1, 100),
                    ),
                    max_size=4,
                )
            )
        ),
        recent_ids=tuple(
            draw(st.binary(min_size=FINGERPRINT_BYTES, max_size=FINGERPRINT_BYTES))
            for _ in range(n_ids)
        ),
        events_applied=draw(st.integers(0, 2**40)),
        last_event_ms=last,
    )


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_round_trip_property(model: Model, data: st.DataObject) -> None:
    state = data.draw(states(model))
    raw = encode_state(state)
    assert raw[0] == STATE_FORMAT == 3
    decoded = decode_state(raw, model)
    assert decoded == state
    # floats round-trip to the bit, signed zeros included
    assert [math.copysign(1, v) for v in decoded.values] == [
        math.copysign(1, v) for v in state.values
    ]


def test_typical_state_is_under_300_bytes(default_model: Model) -> None:
    """A typical customer: 8-20 events over two months across several channels."""
    rng = random.Random(7)
    kinds = ["email_open", "email_click", "web_visit", "loyalty_earn", "content_download",
             "nps_response", "social_share"]  # fmt: skip
    sizes = []
    for _ in range(100):
        state = None
        events = sorted(
            (T0 + rng.randrange(60 * DAY), rng.choice(kinds)) for _ in range(rng.randint(8, 20))
        )
        for ts, kind in events:
            score = rng.randrange(11) if kind == "nps_response" else None
            event = Event(f"{rng.getrandbits(128):032x}", "customer-000123", kind, ts, score)
            state = apply(state, event, default_model).state
        assert state is not None
        sizes.append(len(encode_state(state)))
    sizes.sort()
    assert sizes[50] < 300, sizes  # the median
    assert sizes[-1] < 320, sizes  # and even the largest of these with a full id memory


#: What the JSON formats 1 and 2 of earlier development versions wrote: refused now.
JSON_STATES = [
    b'[2,0,4,"AAAAAAAAFEA",0,1,[0,null],null,null,[],"IOYvsOjZ",1,1699920000000]',
    b'[2,null,null,"",0,0,[],null,null,[],"",0,null]',
    b'[1,0,"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAFEA",0,1,[0,null],null,null,[],"",1,1]',
    b"not json",
    b"{}",
]


@pytest.mark.parametrize("raw", JSON_STATES)
def test_the_json_states_of_earlier_versions_are_refused(model: Model, raw: bytes) -> None:
    with pytest.raises(UnknownFormat, match=f"state: format {raw[0]} is not read") as info:
        decode_state(raw, model)
    assert info.value.found == raw[0]
    assert isinstance(info.value, InvalidState)  # what a caller of decode_state catches


@pytest.mark.parametrize("first", [0, 1, 2, 4, 0x5B, 0xFF])
def test_any_other_first_byte_is_an_unknown_format(model: Model, first: int) -> None:
    raw = bytes([first]) + encode_state(random_history(model, random.Random(2), 5))[1:]
    with pytest.raises(UnknownFormat, match=f"format {first} is not read .only format 3."):
        decode_state(raw, model)
    with pytest.raises(UnknownFormat, match="no bytes"):
        decode_state(b"", model)


def test_a_state_of_another_model_layout_is_refused(model: Model, default_model: Model) -> None:
    state = random_history(model, random.Random(1), 10)
    with pytest.raises(InvalidState):
        decode_state(encode_state(state), default_model)


def test_binary_encoding_of_a_one_event_state(
    default_model: Model, event: Callable[..., Event]
) -> None:
    """The benchmark's typical customer: one event. 81 bytes in JSON, about half here."""
    state = apply(None, Event("bench-42-1", "cust-012345", "email_open", T0, None), default_model)
    raw = encode_state(state.state)
    assert len(raw) <= 48, raw
    assert len(raw) <= 0.6 * 81
    assert decode_state(raw, default_model) == state.state


def test_an_integer_beyond_64_bits_is_refused_clearly(model: Model) -> None:
    state = CustomerState(clock_ms=1.0, events_applied=2**64, last_event_ms=1)
    with pytest.raises(InvalidState, match="does not fit format 3"):
        encode_state(state)


def _binary_of(model: Model) -> bytes:
    return encode_state(random_history(model, random.Random(5), 15))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-1], "bytes, its layout needs"),
        (lambda b: b + b"\0", "bytes, its layout needs"),
        (lambda b: b[:2], "not a format-3 state"),
        (lambda b: b[:1] + b"\xff" + b[2:], "header"),
        (lambda b: b[:2] + b"\x40" + b[3:], "header"),
        (lambda b: b[:3] + b"\x09" + b[4:], "tier"),
        (lambda b: bytes([3, 1 | 4, 0, 0, 99, 0, 0, 0]) + b"\0" * 8, "segments"),
        (lambda b: bytes([3, 2, 0, 0, 0, 0, 0, 0]), "no"),
        (lambda b: bytes([3, 1 | 4 | 64, 0, 0, 0, 0, 0, 0, 255]) + b"\0" * 8, "mask"),
        (lambda b: bytes([3, 1 | 4 | 16, 0, 0, 0, 0, 0, 0, 11]) + b"\0" * 8, "nps_score"),
    ],
)
def test_bad_binary_states_are_invalid_state(
    model: Model, mutate: Callable[[bytes], bytes], message: str
) -> None:
    with pytest.raises(InvalidState, match=message):
        decode_state(mutate(_binary_of(model)), model)


def test_a_binary_cap_of_an_unknown_type_is_refused(model: Model) -> None:
    state = CustomerState(
        clock_ms=1.0, caps=((len(model.event_type_names), 0, 1),), last_event_ms=1
    )
    with pytest.raises(InvalidState, match="caps type"):
        decode_state(encode_state(state), model)

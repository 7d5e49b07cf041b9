"""The customer record format (stream_app/store/records.py): format 2, format 1 still read."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.store.records import (
    RECORD_FORMAT,
    CustomerRecord,
    decode_record,
    encode_record,
    new_token,
    read_record,
)

names = st.text(alphabet="imrf0123456789", min_size=1, max_size=12)
marks = st.dictionaries(names, st.integers(min_value=0, max_value=2**63 - 1), max_size=6)
blobs = st.binary(max_size=400)
tokens = st.builds(
    lambda v, wid: f"{v}.{wid}",
    st.integers(0, 10**9),
    st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True),
)


def format1(token: str, mk: dict[str, int], state: bytes, explain: bytes | None) -> bytes:
    """A record as the previous release wrote it (text header)."""
    text = ",".join(f"{k}={v}" for k, v in sorted(mk.items())) or "-"
    return f"{token} {text} {len(state)} ".encode() + state + (explain or b"")


@given(tokens, marks, blobs, blobs)
def test_round_trip(token: str, mk: dict[str, int], state: bytes, explain: bytes) -> None:
    raw = encode_record(0, mk, state, explain, token)
    rec = decode_record(raw)
    version = int(token.split(".", maxsplit=1)[0])
    assert rec == CustomerRecord(version, mk, state, explain or None, token)
    assert raw[len(token) + 1] == RECORD_FORMAT


@given(tokens, marks, blobs, blobs)
def test_format1_still_read(token: str, mk: dict[str, int], state: bytes, explain: bytes) -> None:
    old = decode_record(format1(token, mk, state, explain))
    assert old == decode_record(encode_record(0, mk, state, explain, token))


@given(tokens, marks, blobs, blobs)
def test_format2_is_not_larger(
    token: str, mk: dict[str, int], state: bytes, explain: bytes
) -> None:
    assert (
        len(encode_record(0, mk, state, explain, token))
        <= len(format1(token, mk, state, explain)) + 1
    )


def test_head_is_what_the_lua_scripts_read() -> None:
    """The scripts take ``^(%S+) `` as the fence token: the token, then one space."""
    token = new_token(41)
    raw = encode_record(41, {"i3": 1042, "m": 2}, b"\x03state", b"\x03expl", token)
    head = re.match(rb"^(\S+) ", raw)
    assert head is not None and head.group(1).decode() == token
    assert b"." in head.group(1) and head.group(1).startswith(b"41.")


def test_write_ids_are_unique_and_plain() -> None:
    seen = {new_token(1) for _ in range(5000)}
    assert len(seen) == 5000
    assert all(re.fullmatch(r"1\.[A-Za-z0-9_-]+", t) for t in seen)


@given(tokens, marks, blobs, blobs, st.data())
def test_truncated_records_are_refused(
    token: str, mk: dict[str, int], state: bytes, explain: bytes, data: st.DataObject
) -> None:
    raw = encode_record(0, mk, state, b"", token)
    cut = (
        data.draw(st.integers(len(token) + 2, len(raw) - 1)) if len(raw) > len(token) + 2 else None
    )
    if cut is None:
        return
    rec = read_record(raw[:cut])
    if rec.fault is None:  # a cut inside the explanation part: none here, so only state
        pytest.fail(f"a record cut at {cut} of {len(raw)} bytes was read: {rec}")
    assert rec.fault[0] == "corrupt_state"


def test_negative_offsets_and_long_names_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_record(1, {"i0": -1}, b"s")
    with pytest.raises(ValueError, match="1 to 255"):
        encode_record(1, {"x" * 256: 1}, b"s")

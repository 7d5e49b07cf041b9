"""Bearer tokens: ``authorized()`` and the token lists of the settings."""

from __future__ import annotations

import hmac

import pytest

from stream_app.http import api as api_module
from stream_app.http.api import authorized
from stream_app.settings import Settings

# --------------------------------------------------------------------------- authorized()


@pytest.mark.parametrize("header", [None, "", "Bearer x", "Basic dDE6dDE=", "garbage"])
def test_no_tokens_configured_lets_everything_in(header: str | None) -> None:
    assert authorized(header, []) is True


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer t1", True),
        ("Bearer t2", True),
        ("bearer t1", True),  # the scheme is case-insensitive (RFC 7235)
        ("BEARER t2", True),
        ("Bearer  t1 ", True),  # surrounding spaces are not part of the token
        (None, False),
        ("", False),
        ("Bearer", False),
        ("Bearer ", False),
        ("Bearer t3", False),
        ("Bearer t", False),  # a prefix of a token
        ("Bearer t1x", False),  # a token plus more
        ("Bearer t1,t2", False),  # the configured list itself
        ("Bearer T1", False),  # tokens are case-sensitive
        ("t1", False),  # no scheme
        ("Token t1", False),
        ("Basic dDE6dDE=", False),
        ("Bearert1", False),
        ("Bearer \udcff", False),  # a 0xff byte, as aiohttp decodes a non-UTF-8 header
        ("Bearer é", False),
    ],
)
def test_bearer_tokens(header: str | None, ok: bool) -> None:
    assert authorized(header, ["t1", "t2"]) is ok


def test_non_ascii_token() -> None:
    assert authorized("Bearer clé", ["clé"]) is True
    assert authorized("Bearer cle", ["clé"]) is False


def test_every_token_is_compared_whatever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant time over the list: no early exit on the first match (or mismatch)."""
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(api_module.hmac, "compare_digest", spy)
    tokens = ["first", "second", "third"]
    for header, ok in (("Bearer first", True), ("Bearer third", True), ("Bearer none", False)):
        calls.clear()
        assert authorized(header, tokens) is ok
        assert [b for _, b in calls] == [t.encode() for t in tokens]
        assert all(isinstance(a, bytes) for a, _ in calls)


def test_token_lists_from_the_environment() -> None:
    s = Settings.from_env({"ENGAGEMENT_API_TOKENS": " t1, t2,,", "ENGAGEMENT_OPS_TOKENS": ""})
    assert s.api_token_list == ["t1", "t2"] and s.ops_token_list == []
    assert s.redacted()["api_tokens"] == "***"
    assert authorized("Bearer t2", s.api_token_list) and authorized(None, s.ops_token_list)

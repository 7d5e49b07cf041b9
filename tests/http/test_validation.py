"""Request validation: every bad query gets its error code before any I/O."""

from __future__ import annotations

import pytest

from stream_app.http.api import MAX_LIMIT, MAX_NPS_DAYS, ReadApi
from tests.http.readapi import TODAY, error_code, reaches_redis, run

# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("query", "code", "fragment"),
    [
        ({"from": "2024-03-10", "to": "2024-03-09"}, "bad_window", "before"),
        ({"from": "2024-03-16"}, "bad_window", "before"),  # after the default ``to``: today
        ({"to": "2024-02-14"}, "bad_window", "before"),  # before the default ``from``
        ({"from": "2023-03-14", "to": "2024-03-14"}, "bad_window", f"{MAX_NPS_DAYS} days"),
        ({"from": "1999-01-01"}, "bad_window", f"{MAX_NPS_DAYS} days"),
        ({"from": "2023-02-29"}, "bad_window", "calendar"),
        ({"from": "2024-13-01"}, "bad_window", "calendar"),
        ({"to": "2024-04-31"}, "bad_window", "calendar"),
        ({"from": "2024-3-1"}, "bad_window", "YYYY-MM-DD"),
        ({"from": "20240301"}, "bad_window", "YYYY-MM-DD"),
        ({"from": "2024-03-01T00:00:00Z"}, "bad_window", "YYYY-MM-DD"),
        ({"to": "yesterday"}, "bad_window", "YYYY-MM-DD"),
        ({"to": "2024-03-01\n"}, "bad_window", ""),
        (
            {"to": "\u0662\u0660\u0662\u0664-03-01"},
            "bad_window",
            "",
        ),  # Arabic-Indic digits match \d
        ({"by": "segment"}, "bad_by", "tier"),
        ({"by": "TIER"}, "bad_by", "tier"),
        ({"by": "tier,segment"}, "bad_by", "tier"),
    ],
)
def test_nps_window_validation(
    read_api: ReadApi, query: dict[str, str], code: str, fragment: str
) -> None:
    answer = run(read_api.nps(query, today=TODAY))
    assert error_code(answer) == (400, code)
    assert fragment in answer[1]["error"]["message"]


@pytest.mark.parametrize(
    "query",
    [
        {},  # the default: the 30 days up to today
        {"by": "tier"},
        {"by": ""},
        {"from": "", "to": ""},
        {"from": "2024-03-15", "to": "2024-03-15"},  # one day
        {"from": "2023-03-16", "to": "2024-03-15"},  # exactly 366 days
        {"from": "2020-01-01", "to": "2020-12-31"},  # a leap year: 366 days
        {"to": "2030-01-01", "from": "2029-06-01"},  # the future is allowed (and empty)
    ],
)
def test_nps_windows_that_are_accepted(read_api: ReadApi, query: dict[str, str]) -> None:
    assert reaches_redis(lambda: read_api.nps(query, today=TODAY))


@pytest.mark.parametrize(
    ("customer_id", "status", "code"),
    [
        ("bad id", 400, "bad_customer_id"),
        ("", 400, "bad_customer_id"),
        ("x" * 129, 400, "bad_customer_id"),
        ("tab\there", 400, "bad_customer_id"),
        ("nl\n", 400, "bad_customer_id"),
    ],
)
def test_customer_id_validation(
    read_api: ReadApi, customer_id: str, status: int, code: str
) -> None:
    assert error_code(run(read_api.customer(customer_id))) == (status, code)
    assert error_code(run(read_api.explain(customer_id))) == (status, code)


@pytest.mark.parametrize("customer_id", ["c-1", "x" * 128, "{a}%b", "a/b", "é"])
def test_valid_customer_ids_go_to_redis(read_api: ReadApi, customer_id: str) -> None:
    assert reaches_redis(lambda: read_api.customer(customer_id))


@pytest.mark.parametrize(
    ("name", "query", "status", "code"),
    [
        ("no_such_segment", {}, 404, "unknown_segment"),
        ("advocate", {"limit": "0"}, 400, "bad_limit"),
        ("advocate", {"limit": str(MAX_LIMIT + 1)}, 400, "bad_limit"),
        ("advocate", {"limit": "5000"}, 400, "bad_limit"),
        ("advocate", {"limit": "-1"}, 400, "bad_limit"),
        ("advocate", {"limit": "abc"}, 400, "bad_limit"),
        ("advocate", {"limit": "1.5"}, 400, "bad_limit"),
        ("advocate", {"limit": ""}, 400, "bad_limit"),
        ("advocate", {"cursor": "bad cursor"}, 400, "bad_cursor"),
        ("advocate", {"cursor": "x" * 129}, 400, "bad_cursor"),
        ("advocate", {"cursor": "a\x00b"}, 400, "bad_cursor"),
    ],
)
def test_members_validation(
    read_api: ReadApi, name: str, query: dict[str, str], status: int, code: str
) -> None:
    assert error_code(run(read_api.members(name, query))) == (status, code)


@pytest.mark.parametrize(
    "query", [{}, {"limit": "1"}, {"limit": str(MAX_LIMIT)}, {"cursor": "c-1", "limit": "2"}]
)
def test_members_queries_that_are_accepted(read_api: ReadApi, query: dict[str, str]) -> None:
    assert reaches_redis(lambda: read_api.members("advocate", query))

"""The dashboard's pure parts: its files, the daily NPS, request validation before Redis.

No services: the ReadApi here (``conftest.py``) sits on a Redis client pointed at a closed
port, so a request that passed validation fails with a connection error. The page in a real
browser, over a running worker, is ``tests/integration/test_dashboard.py``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import tomllib
from datetime import timedelta

import pytest
import redis.exceptions

from scoring import load_default_model, nps
from stream_app.http import dashboard, npsdaily
from stream_app.http.api import ApiError, ReadApi, daily_window
from tests.http.readapi import REPO, TODAY

STATIC = REPO / "stream_app" / "http" / "static"


# --------------------------------------------------------------------------- files


def test_the_page_is_made_of_the_served_files_only() -> None:
    assert {p.name for p in STATIC.iterdir()} == set(dashboard.ASSETS)
    html = (STATIC / "dashboard.html").read_text("utf-8")
    linked = set(re.findall(r'(?:src|href)="([^"]+)"', html))
    assert linked == {f"/dashboard/static/{n}" for n in ("dashboard.css", "charts.js",
                                                         "dashboard.js")}  # fmt: skip
    for name in dashboard.ASSETS:
        assert dashboard.asset(name) == (STATIC / name).read_bytes()
    for name in ("../views.py", "x.js", "", "dashboard.js/..", "DASHBOARD.JS"):
        with pytest.raises(KeyError):
            dashboard.asset(name)


def test_the_page_works_offline_under_its_content_security_policy() -> None:
    """No CDN or other origin, no inline script or style (the policy allows neither)."""
    csp = dashboard.PAGE_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "connect-src 'self'" in csp
    for name in dashboard.ASSETS:
        text = (STATIC / name).read_text("utf-8")
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)  # the SVG namespace
    html = (STATIC / "dashboard.html").read_text("utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "<style" not in html and " style=" not in html and "onclick" not in html
    js = (STATIC / "dashboard.js").read_text("utf-8") + (STATIC / "charts.js").read_text()
    assert 'setAttribute("style"' not in js and "innerHTML" not in js


def test_the_token_stays_out_of_urls() -> None:
    js = (STATIC / "dashboard.js").read_text("utf-8")
    assert "sessionStorage" in js and "localStorage" not in js
    assert "Authorization: `Bearer ${token}`" in js
    # read from the fragment, then the fragment is dropped from the address bar
    assert "location.hash" in js and "history.replaceState" in js
    assert "location.search" in js  # (kept: the query is the page's, not the token's)
    assert not re.search(r"[?&]token=", js), "a token in a query string"


def test_the_stable_test_attributes_are_there() -> None:
    js = (STATIC / "charts.js").read_text("utf-8") + (STATIC / "dashboard.js").read_text()
    assert '"data-testid": "tier-count"' in js and '"data-tier": t.name' in js
    assert 'data-testid="nps"' in (STATIC / "dashboard.html").read_text("utf-8")


def test_the_package_ships_the_files() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["stream_app"]
    for name in dashboard.ASSETS:
        assert any(fnmatch.fnmatch(f"http/static/{name}", p) for p in patterns), name


# --------------------------------------------------------------------------- daily NPS


def counts_for(days: dict[str, tuple[str, int, int, int]]) -> dict[str, int]:
    """NPS counters as the worker keeps them: per day, per tier and overall (``*``)."""
    out: dict[str, int] = {}
    for day, (tier, p, pa, d) in days.items():
        for cat, n in (("promoter", p), ("passive", pa), ("detractor", d)):
            if n:
                for group in ("*", tier):
                    out[f"{day}|{group}|{cat}"] = out.get(f"{day}|{group}|{cat}", 0) + n
    return out


def test_daily_nps_has_every_day_of_the_window() -> None:
    model = load_default_model()
    counts = counts_for(
        {"2024-03-01": ("warm", 3, 1, 1), "2024-03-15": ("cold", 0, 0, 2),
         "2023-12-16": ("hot", 9, 0, 0)}  # the day before the window
    )  # fmt: skip
    start, end, by_tier = daily_window({"by": "tier"}, TODAY)
    assert (start, end, by_tier) == (TODAY - timedelta(days=89), TODAY, True)
    body = npsdaily.days_body(counts, model, start, end, by_tier=by_tier)
    assert (body["from"], body["to"]) == ("2023-12-17", "2024-03-15")
    days = body["days"]
    assert len(days) == 90 and [d["day"] for d in days] == sorted(d["day"] for d in days)
    by_day = {d["day"]: d for d in days}
    assert by_day["2024-03-01"] == {"day": "2024-03-01", "nps": nps(3, 1, 1), "promoters": 3,
                                    "passives": 1, "detractors": 1, "responses": 5}  # fmt: skip
    assert by_day["2024-03-15"]["nps"] == -100
    assert by_day["2024-03-02"] == {"day": "2024-03-02", "nps": None, "promoters": 0,
                                    "passives": 0, "detractors": 0, "responses": 0}  # fmt: skip
    assert set(body["by_tier"]) == {t.name for t in model.tiers}
    warm = {d["day"]: d["responses"] for d in body["by_tier"]["warm"]}
    assert warm["2024-03-01"] == 5 and sum(warm.values()) == 5
    assert sum(d["responses"] for d in body["by_tier"]["hot"]) == 0  # before the window
    # every day: the tiers add up to the overall count
    for k, day in enumerate(days):
        assert sum(body["by_tier"][t.name][k]["responses"] for t in model.tiers) == day["responses"]
    one = npsdaily.days_body(counts, model, TODAY, TODAY, by_tier=False)
    assert "by_tier" not in one and [d["responses"] for d in one["days"]] == [2]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"from": "2024-03-10", "to": "2024-03-09"}, "bad_window"),
        ({"from": "2024-03-16"}, "bad_window"),  # after the default ``to``
        ({"to": "2023-03-14", "from": "2022-03-13"}, "bad_window"),  # 367 days
        ({"from": "2023-02-29"}, "bad_window"),
        ({"to": "yesterday"}, "bad_window"),
        ({"by": "segment"}, "bad_by"),
    ],
)
def test_daily_nps_refuses_bad_windows_before_redis(
    read_api: ReadApi, query: dict[str, str], code: str
) -> None:
    status, body = asyncio.run(read_api.nps_daily(query, today=TODAY))
    assert (status, body["error"]["code"]) == (400, code)


@pytest.mark.parametrize(
    "query", [{}, {"by": "tier"}, {"from": "2023-03-16", "to": "2024-03-15"}, {"to": "2024-01-01"}]
)
def test_daily_nps_accepts_good_windows(read_api: ReadApi, query: dict[str, str]) -> None:
    with pytest.raises((redis.exceptions.ConnectionError, OSError)):
        asyncio.run(read_api.nps_daily(query, today=TODAY))


# --------------------------------------------------------------------------- timeline, feed


@pytest.mark.parametrize(
    ("customer_id", "query", "code"),
    [("bad id", {}, "bad_customer_id"), ("c-1", {"samples": "1"}, "bad_samples"),
     ("c-1", {"samples": "x"}, "bad_samples"), ("x" * 129, {}, "bad_customer_id")],
)  # fmt: skip
def test_timeline_refuses_bad_requests_before_redis(
    read_api: ReadApi, customer_id: str, query: dict[str, str], code: str
) -> None:
    with pytest.raises(ApiError) as raised:
        asyncio.run(read_api.timeline(customer_id, query))
    status, body = raised.value.answer
    assert (status, body["error"]["code"]) == (400, code)
    with pytest.raises((redis.exceptions.ConnectionError, OSError)):
        asyncio.run(read_api.timeline("c-1", {"samples": "10"}))


@pytest.mark.parametrize("text", ["0", "201", "-1", "abc", "1.5", "\u0662", " 5"])
def test_changes_limit_refused(text: str) -> None:
    with pytest.raises(ApiError) as raised:
        dashboard.changes_limit({"limit": text})
    assert raised.value.answer[1]["error"]["code"] == "bad_limit"

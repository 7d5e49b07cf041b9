"""The dashboard in a real browser, over a real worker: what the page shows is what the API says.

One worker (real Tansu, real redis-server, web server on a free port, an API token, JSON
logs) is fed 60 days of simulated traffic for 150 customers, then a burst of live events.
Debian's headless ``chromium`` (installed by ``scripts/bootstrap --browser``, which ``make
test`` runs) loads ``/dashboard#token=...`` and is driven over the DevTools protocol: the
tier counts, their moves, the NPS and its split, segment sizes, the NPS trend, the latest
changes and a customer lookup are read from the page and compared with the API's answers.
A screenshot is saved next to the test's files and as ``artifacts/dashboard.png``.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.devkit import simulator
from stream_app.devkit.stack import LocalService, free_port
from tests.integration.api.client import OPENAPI, Reply, Spec, http_get, up
from tests.integration.browser import Browser, chromium_binary
from tests.integration.workers import (
    OLD_MS,
    REPO,
    Worker,
    dumps,
    event,
    now_ms,
    start_worker,
    stop_all,
    unique,
)
from tests.support.fold import fold
from tests.support.kafka import Out, Sent

pytestmark = pytest.mark.integration

TOKEN = "dash-" + "x7Kq2" * 4
OPS_TOKEN = "ops-dash"
ARTIFACTS = REPO / "artifacts"


class Stack:
    """The worker, its port, and a browser on the dashboard."""

    def __init__(self, worker: Worker, port: int, browser: Browser, docs: list[Any]) -> None:
        self.worker = worker
        self.port = port
        self.browser = browser
        self.docs = docs

    def api(self, path: str) -> Any:
        reply = http_get(self.port, path, token=TOKEN)
        assert reply.status == 200, (path, reply.body[:300])
        return reply.json()

    def get(self, path: str, **kw: Any) -> Reply:
        return http_get(self.port, path, **kw)

    def page(self, expression: str) -> Any:
        return self.browser.evaluate(expression)

    def texts(self, selector: str, attribute: str) -> dict[str, str]:
        return dict(
            self.page(
                f"[...document.querySelectorAll({selector!r})]"
                f".map(e => [e.getAttribute({attribute!r}), e.textContent.trim()])"
            )
        )


def produce_keyed(w: Worker, docs: list[dict[str, Any]]) -> dict[str, Sent]:
    """Produce keyed; the last offset of each customer (to wait on)."""
    sent = w.produce([Out(dumps(d), d["customer_id"].encode()) for d in docs])
    return {d["customer_id"]: s for d, s in zip(docs, sent, strict=True)}


@pytest.fixture(scope="module")
def stack(
    tansu: LocalService, redis_server: LocalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    binary = chromium_binary()
    if binary is None:  # scripts/bootstrap --browser installs it (make test does)
        pytest.fail("chromium is not installed: run `make browser` (scripts/bootstrap --browser)")
    workdir = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    w = start_worker(
        tansu, redis_server, workdir, name="dash",
        ENGAGEMENT_WEB_ENABLED="true", ENGAGEMENT_WEB_BIND="127.0.0.1",
        ENGAGEMENT_WEB_PORT=str(port), ENGAGEMENT_API_TOKENS=TOKEN,
        ENGAGEMENT_OPS_TOKENS=OPS_TOKEN, ENGAGEMENT_LOG_FORMAT="json",
    )  # fmt: skip
    browser: Browser | None = None
    try:
        w.wait_ready(at_ms=OLD_MS)  # joined; an old probe fires no crossing ahead of history
        config = simulator.SimConfig.ending(now_ms(), 60, customers=150, seed=5)
        docs: list[dict[str, Any]] = list(simulator.history(config))
        t = now_ms()
        # a few NPS answers today, and a burst of live events
        docs += [
            event(unique("e"), f"cust-{k:06d}", "nps_response", t - 60_000, score=k % 11)
            for k in range(0, 150, 7)
        ]
        docs += [event(unique("e"), f"cust-{k:06d}", "web_visit", t - 1000) for k in range(40)]
        w.wait_processed(produce_keyed(w, docs), timeout=120)
        w.wait(lambda: up(port), timeout=30, what="/healthz")
        browser = Browser(binary, workdir)
        yield Stack(w, port, browser, docs)
    finally:
        if browser is not None:
            browser.close()
        problems = stop_all([w])
        assert not problems, problems


def moves(tier: dict[str, Any]) -> tuple[str, str]:
    """The thermometer's two lines of a tier's moves, as the page writes them."""
    hour, day = (
        f"+{tier[f'entered_last_{span}']} in \u2212{tier[f'left_last_{span}']} out"
        for span in ("hour", "day")
    )
    return hour, day


def settled(s: Stack, read: Any, tries: int = 8) -> tuple[Any, Any]:
    """``(api, page)`` read while nothing moved: the API before and after a page refresh
    agree (a decay crossing can fall due at any moment; then the reading is taken again)."""
    for _ in range(tries):
        before = read["api"]()
        s.browser.evaluate("window.dashboard.refresh()", await_promise=True)
        page = read["page"]()
        if read["api"]() == before:
            return before, page
    pytest.fail(f"the API kept changing over {tries} page refreshes")


def test_the_page_shows_what_the_api_says(stack: Stack) -> None:
    s = stack
    s.browser.call("Emulation.setDeviceMetricsOverride", width=1440, height=1200,
                   deviceScaleFactor=1, mobile=False)  # fmt: skip
    s.browser.navigate(f"http://127.0.0.1:{s.port}/dashboard#token={TOKEN}")
    # the token left the address bar for the tab's sessionStorage
    assert s.page("location.href") == f"http://127.0.0.1:{s.port}/dashboard"
    assert s.page("sessionStorage.getItem('engagement-scorer.api-token')") == TOKEN
    # the first load already shows the latest changes (the feed starts with that request)
    s.browser.wait_for("Number(document.body.dataset.refreshes || 0) >= 1")
    assert s.page("document.querySelectorAll('#feed tr').length") == 30

    def api() -> dict[str, Any]:
        tiers = s.api("/v1/tiers")["tiers"]
        nps = s.api("/v1/nps")
        return {
            "tiers": {t["name"]: str(t["customers"]) for t in tiers},
            "moves": {t["name"]: moves(t) for t in tiers},
            "nps": "-" if nps["overall"]["nps"] is None else str(nps["overall"]["nps"]),
            "split": {k: str(nps["overall"][k]) for k in ("promoters", "passives", "detractors")},
            "segments": {x["name"]: str(x["customers"]) for x in s.api("/v1/segments")["segments"]},
            "feed": [c["id"] for c in s.api("/v1/changes?limit=50")["changes"]][:30],
            "trend": {d["day"]: d["nps"] for d in s.api("/v1/nps/daily")["days"] if d["responses"]},
        }

    def page() -> dict[str, Any]:
        shown_moves = s.page(
            "[...document.querySelectorAll('[data-testid=tier-count]')]"
            ".map(e => [e.dataset.tier, [...document.querySelectorAll("
            "`[data-tier='${e.dataset.tier}'].moves`)].map(m => m.textContent)])"
        )
        moves = {
            tier: tuple(re.sub(r"\s+", " ", m).split(" ", 2)[2] for m in (hour, day))
            for tier, (hour, day) in shown_moves
        }
        split = {k: s.page(f"document.querySelector('[data-testid=nps-{k}] b').textContent")
                 for k in ("promoters", "passives", "detractors")}  # fmt: skip
        dots = s.page(
            "[...document.querySelectorAll('#nps-trend circle title')].map(t => t.textContent)"
        )
        return {
            "tiers": s.texts("[data-testid=tier-count]", "data-tier"),
            "moves": moves,
            "nps": s.page("document.querySelector('[data-testid=nps]').textContent"),
            "split": split,
            "segments": s.texts("[data-testid=segment-count]", "data-segment"),
            "feed": s.page("[...document.querySelectorAll('#feed tr')].map(r => r.dataset.change)"),
            "trend": {
                m.group(1): int(m.group(2))
                for m in (re.match(r"(\S+): NPS (-?\d+) ", d) for d in dots)
                if m is not None
            },
        }

    expected, shown = settled(s, {"api": api, "page": page})
    assert shown == expected
    # not vacuous: customers in several tiers, NPS answers, changes, a trend
    assert sum(int(n) for n in expected["tiers"].values()) >= 100
    assert len([n for n in expected["tiers"].values() if int(n) > 0]) >= 2
    assert expected["nps"] != "-" and len(expected["trend"]) >= 10
    assert len(expected["feed"]) == 30 and any(int(n) for n in expected["segments"].values())
    assert not s.browser.console_errors()


def test_customer_lookup_and_screenshot(stack: Stack, tmp_path: Path) -> None:
    s = stack
    counts: dict[str, int] = {}
    for d in s.docs:
        counts[d["customer_id"]] = counts.get(d["customer_id"], 0) + 1
    cid = max(sorted(counts), key=lambda c: counts[c])  # the busiest customer
    s.browser.evaluate(f"window.dashboard.lookup({cid!r})", await_promise=True)
    customer = s.api(f"/v1/customers/{urllib.parse.quote(cid, safe='')}")
    timeline = s.api(f"/v1/customers/{urllib.parse.quote(cid, safe='')}/timeline")
    assert s.page("document.querySelector('[data-testid=customer-id]').textContent") == cid
    assert (
        s.page("document.querySelector('[data-testid=customer-tier]').textContent")
        == (customer["tier"])
    )
    segments = s.page(
        "[...document.querySelectorAll('[data-testid=customer-segments] .chip')]"
        ".map(c => c.textContent)"
    )
    assert segments == customer["segments"]
    score = float(s.page("document.querySelector('[data-testid=customer-score]').textContent"))
    assert abs(score - customer["score"]) <= 0.006  # two decimals, a moment apart
    applied = s.page("document.querySelector('[data-testid=customer-events-applied]').textContent")
    assert applied == str(customer["events_applied"]) == str(counts[cid])
    rows = s.page("document.querySelectorAll('#customer-events tr').length")
    assert rows == len(timeline["events"]) == 10  # ENGAGEMENT_EXPLAIN_EVENTS' default
    assert s.page("document.querySelectorAll('#customer-chart path').length") >= 2
    # the timeline ends where the customer view is: the same exact values, decayed to now
    assert abs(timeline["series"]["score"][-1] - customer["score"]) < 1e-3
    s.browser.evaluate("window.scrollTo(0, 0)")
    shot = s.browser.screenshot(tmp_path / "dashboard.png")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 1440 and height > 1000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "dashboard.png")
    assert not s.browser.console_errors()


def test_sign_in_and_the_token_never_in_a_url(stack: Stack) -> None:
    s = stack
    b = s.browser
    b.call("Network.enable")
    b.evaluate("sessionStorage.clear()")
    b.navigate(f"http://127.0.0.1:{s.port}/dashboard")
    b.evaluate("window.dashboard.refresh()", await_promise=True)
    assert b.evaluate("document.getElementById('signin').hidden") is False
    assert "token" in b.evaluate("document.getElementById('status').textContent")
    assert b.evaluate("document.querySelectorAll('[data-testid=tier-count]').length") == 0
    for token, signed_in in (("wrong", False), (TOKEN, True)):
        b.evaluate(f"document.getElementById('token-input').value = {token!r}")
        b.evaluate("document.getElementById('signin').requestSubmit()")
        b.evaluate("window.dashboard.refresh()", await_promise=True)
        assert b.evaluate("document.getElementById('signin').hidden") is signed_in, token
    tiers = s.texts("[data-testid=tier-count]", "data-tier")
    assert set(tiers) == {t.name for t in s.worker.model.tiers}
    urls = [e["params"]["request"]["url"] for e in b.events
            if e.get("method") == "Network.requestWillBeSent"]  # fmt: skip
    assert any("/v1/tiers" in u for u in urls)
    assert not [u for u in urls if TOKEN in u or "wrong" in u]


def test_the_change_feed_follows_the_output_topic(stack: Stack) -> None:
    s = stack
    w = s.worker
    cid = unique("feed")
    t = now_ms()
    docs = [event(unique("e"), cid, "webinar_attended", t - 500) for _ in range(6)]  # -> hot
    w.wait_processed(produce_keyed(w, docs))
    expected = [c.change_id for c in fold((dumps(d) for d in docs), w.model)[cid].changes]
    assert len(expected) >= 2

    def latest() -> list[dict[str, Any]]:
        return [c for c in s.api("/v1/changes?limit=200")["changes"] if c["customer_id"] == cid]

    mine = w.wait(lambda: len(latest()) == len(expected) and latest(), what="our changes")
    assert sorted(c["id"] for c in mine) == sorted(expected)
    assert {(c["from"], c["to"]) for c in mine if c["kind"] == "tier"} == {
        ("cold", "warm"),
        ("warm", "hot"),
    }
    assert all(c["cause"] == "event" for c in mine)
    # on the topic itself: the same ids
    topic = {m.json()["id"] for m in w.read_all(w.settings.output_topic)}
    assert set(expected) <= topic
    assert s.get("/v1/changes?limit=201", token=TOKEN).status == 400
    assert s.get("/v1/changes").status == 401


def test_metrics_through_prometheus_client(stack: Stack) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    s = stack
    reply = s.get("/metrics", token=OPS_TOKEN)
    assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    tiers = {t["name"]: t["customers"] for t in s.api("/v1/tiers")["tiers"]}
    segments = {x["name"]: x["customers"] for x in s.api("/v1/segments")["segments"]}
    gauge = {x.labels["tier"]: x.value for x in families["engagement_tier_customers"].samples}
    assert gauge == tiers and sum(tiers.values()) > 0
    gauge = {x.labels["segment"]: x.value for x in families["engagement_segment_customers"].samples}
    assert gauge == segments
    (build,) = families["engagement_build_info"].samples
    assert build.value == 1 and build.labels["version"]
    assert families["process_cpu_seconds"].samples[0].value > 0
    assert families["engagement_event_time_timestamp_seconds"].samples
    prometheus = http_get_accept(s.port, "/metrics", "application/openmetrics-text;version=1.0.0")
    assert prometheus.headers.get_content_type() == "application/openmetrics-text"
    assert prometheus.body.endswith(b"# EOF\n")


def http_get_accept(port: int, path: str, accept: str) -> Reply:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", f"Bearer {OPS_TOKEN}")
    request.add_header("Accept", accept)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=15) as response:
        return Reply(response.status, response.headers, response.read())


def test_the_worker_logs_json(stack: Stack) -> None:
    lines = [x for x in stack.worker.log_path.read_bytes().splitlines() if x.strip()]
    assert len(lines) > 5
    docs = [orjson.loads(x) for x in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= d.keys() for d in docs)
    assert any("scoring with model" in d["message"] for d in docs)


def test_the_new_endpoints_answer_as_documented(stack: Stack) -> None:
    s = stack
    spec = Spec(OPENAPI)

    def check(template: str, path: str, status: int = 200, **kw: Any) -> Any:
        reply = s.get(path, **{"token": TOKEN, **kw})
        assert reply.status == status, (path, reply.body[:300])
        return spec.check(template, reply)

    daily = check("/v1/nps/daily", "/v1/nps/daily?by=tier")
    assert len(daily["days"]) == 90 and set(daily["by_tier"]) == {"cold", "warm", "hot"}
    for k, day in enumerate(daily["days"]):  # every answer counted under one tier
        assert (
            sum(daily["by_tier"][t][k]["responses"] for t in daily["by_tier"]) == day["responses"]
        )
    # the last 30 days add up to GET /v1/nps's default window
    total = s.api("/v1/nps")
    window = [d for d in daily["days"] if total["from"] <= d["day"] <= total["to"]]
    assert len(window) == 30
    for key in ("promoters", "passives", "detractors", "responses"):
        assert sum(d[key] for d in window) == total["overall"][key], key
    assert total["overall"]["responses"] > 0
    check("/v1/nps/daily", "/v1/nps/daily?from=2024-01-02&to=2024-01-01", 400)
    check("/v1/nps/daily", "/v1/nps/daily", 401, token=None)

    changes = check("/v1/changes", "/v1/changes?limit=5")
    assert len(changes["changes"]) == 5 and changes["topic"] == s.worker.settings.output_topic
    check("/v1/changes", "/v1/changes?limit=0", 400)

    cid = s.docs[0]["customer_id"]
    timeline = check("/v1/customers/{customer_id}/timeline", f"/v1/customers/{cid}/timeline")
    assert timeline["customer_id"] == cid and len(timeline["series"]["t_ms"]) >= 240
    for path, status in (
        (f"/v1/customers/{cid}/timeline?samples=1", 400),
        ("/v1/customers/bad%20id/timeline", 400),
        ("/v1/customers/nobody-here/timeline", 404),
    ):
        check("/v1/customers/{customer_id}/timeline", path, status)

    page = s.get("/dashboard")
    assert page.status == 200 and page.headers.get_content_type() == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        reply = s.get(f"/dashboard/static/{name}")
        assert reply.status == 200 and reply.headers.get_content_type() == kind
    missing = check("/dashboard/static/{name}", "/dashboard/static/secrets.txt", 404)
    assert missing["error"]["code"] == "not_found"
    assert s.get("/dashboard/static/..%2Fviews.py").status == 404

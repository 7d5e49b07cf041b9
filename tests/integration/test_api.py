"""The HTTP read API, health checks and metrics of a running worker, over real Tansu and Redis.

Three workers serve the module (started together, stopped together), each with its web
server on a free loopback port:

* ``api``: no auth, ``ENGAGEMENT_EXPLAIN_EVENTS=3``; the /v1/ endpoints, /metrics.
* ``secured``: ``ENGAGEMENT_API_TOKENS=t1,t2`` and ``ENGAGEMENT_OPS_TOKENS``; auth, and the
  NPS windows (nothing else sends it NPS answers, so its per-day counts are all ours).
* ``ready``: its own redis-server, stopped and restarted under it for /readyz.

Expected values come from the pure core: the same events folded through ``scoring.apply``.
Every response body is also validated against its schema in ``docs/openapi.yaml``.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import Message as HttpHeaders
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scoring import Model, decode_state, next_crossing, nps, values_at
from stream_app.contracts import rfc3339
from stream_app.devkit.stack import LocalService, free_port, restart_redis, start_redis
from stream_app.store.records import decode_record
from tests.integration.workers import (
    REPO,
    Folded,
    Sent,
    Worker,
    catch_up,
    close,
    dumps,
    event,
    fold,
    now_ms,
    start_worker,
    stop_all,
    unique,
)

pytestmark = pytest.mark.integration

OPENAPI = REPO / "docs" / "openapi.yaml"
API_TOKENS = ("t1", "t2")
OPS_TOKEN = "ops-secret"
EXPLAIN_EVENTS = 3
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: HttpHeaders
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


# no proxies from the environment: the worker is on loopback
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(port: int, path: str, *, token: str | None = None, auth: str | None = None) -> Reply:
    """GET ``path`` (already URL-encoded); ``token`` sends ``Bearer <token>``, ``auth`` the
    raw ``Authorization`` header."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if auth is not None:
        request.add_header("Authorization", auth)
    try:
        with _OPENER.open(request, timeout=15) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.headers, exc.read())


def up(port: int) -> bool:
    try:
        return http_get(port, "/healthz").status == 200
    except OSError:
        return False


def q(**params: object) -> str:
    return "?" + urllib.parse.urlencode(params)


# --------------------------------------------------------------------------- OpenAPI


class Spec:
    """``docs/openapi.yaml``: validates a JSON body against the documented response."""

    def __init__(self, path: Path) -> None:
        self.doc = yaml.safe_load(path.read_text("utf-8"))
        assert self.doc["openapi"].startswith("3.1")

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node and node["$ref"].startswith("#/components/responses/"):
            node = self.doc["components"]["responses"][node["$ref"].rsplit("/", 1)[1]]
        return node

    def check(self, template: str, reply: Reply) -> Any:
        """The body, after checking it against the schema of ``template``'s GET at that status."""
        responses = self.doc["paths"][template]["get"]["responses"]
        assert str(reply.status) in responses, f"{template}: {reply.status} is not documented"
        documented = self._resolve(responses[str(reply.status)])
        content_type = reply.headers.get_content_type()
        assert content_type in documented["content"], (template, reply.status, content_type)
        body = reply.json()
        schema = {
            "allOf": [documented["content"][content_type]["schema"]],
            "components": self.doc["components"],
        }
        jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        ).validate(body)
        if reply.status == 401:
            assert reply.headers["WWW-Authenticate"] == "Bearer"
        return body


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec(OPENAPI)


# --------------------------------------------------------------------------- workers


@dataclass
class Served:
    """A worker and the port of its web server."""

    worker: Worker
    port: int
    redis: LocalService | None = None  # its own redis-server, if any
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, path: str, **kw: Any) -> Reply:
        return http_get(self.port, path, **kw)

    @property
    def model(self) -> Model:
        return self.worker.model


def web_env(port: int, **extra: str) -> dict[str, str]:
    return {
        "ENGAGEMENT_WEB_ENABLED": "true",
        "ENGAGEMENT_WEB_BIND": "127.0.0.1",
        "ENGAGEMENT_WEB_PORT": str(port),
        **extra,
    }


@pytest.fixture(scope="module")
def served(
    tansu: LocalService, redis_server: LocalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    workdir = tmp_path_factory.mktemp("api")
    own_redis = start_redis(data_dir=workdir / "ready-redis")
    holder: dict[str, Served] = {}
    try:
        ports = {name: free_port() for name in ("api", "secured", "ready")}
        extra = {
            "api": web_env(ports["api"], ENGAGEMENT_EXPLAIN_EVENTS=str(EXPLAIN_EVENTS)),
            "secured": web_env(
                ports["secured"],
                ENGAGEMENT_API_TOKENS=",".join(API_TOKENS),
                ENGAGEMENT_OPS_TOKENS=OPS_TOKEN,
            ),
            "ready": web_env(ports["ready"]),
        }
        for name in ("api", "secured", "ready"):
            store = own_redis if name == "ready" else redis_server
            w = start_worker(tansu, store, workdir / name, name=name, **extra[name])
            holder[name] = Served(w, ports[name], own_redis if name == "ready" else None)
        for s in holder.values():
            s.worker.wait_ready()
            s.worker.wait(lambda s=s: up(s.port), timeout=30, what="/healthz")
        yield holder
    finally:
        stop_all([s.worker for s in holder.values()])
        ready = holder.get("ready")
        (ready.redis if ready and ready.redis else own_redis).stop()


# --------------------------------------------------------------------------- helpers


def produce_and_wait(w: Worker, docs: list[dict[str, Any]]) -> list[Sent]:
    """Produce keyed events and wait until every customer's last one is processed."""
    sent = w.produce_events(docs)
    last: dict[str, Sent] = {}
    for doc, s in zip(docs, sent, strict=True):
        last[doc["customer_id"]] = s
    w.wait_processed(last)
    return sent


def expected_states(w: Worker, docs: list[dict[str, Any]]) -> dict[str, Folded]:
    """The offline fold of ``docs`` (keyed: per customer in production order), each state
    caught up with decay crossings the worker's timer may have fired since."""
    folded = fold((dumps(d) for d in docs), w.model, dedup_memory=w.settings.dedup_memory)
    actual = w.states(folded)
    for cid, f in folded.items():
        got = actual[cid]
        assert got is not None and f.state is not None, cid
        f.state = catch_up(f.state, got, cid, w.model)
    return folded


def between(value: float, a: float, b: float) -> bool:
    """``value`` lies between ``a`` and ``b`` (either order), up to the fold's tolerance."""
    lo, hi = min(a, b), max(a, b)
    return (lo <= value <= hi) or close(value, lo) or close(value, hi)


def ms_of(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def settle_decay(w: Worker) -> None:
    """Wait until no customer of ``w`` has a decay crossing due (the timer fired them all)."""

    def due_now() -> int:
        until = now_ms()
        return sum(
            w.redis.zcount(w.keys.due(p), "-inf", until) for p in range(w.settings.partitions)
        )

    w.wait(lambda: due_now() == 0, what="no decay crossing due")


# --------------------------------------------------------------------------- customer


def test_customer_values_now_and_at_clock(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    w, model = s.worker, s.model
    tag = unique("cust")
    a, b = f"{tag}-a", f"{tag}-b"
    t = now_ms()
    docs = [
        event(unique("e"), a, "email_open", t - 30 * HOUR_MS),
        event(unique("e"), a, "webinar_attended", t - 20 * HOUR_MS),
        event(unique("e"), a, "web_visit", t - 10 * HOUR_MS),
        event(unique("e"), a, "social_share", t - 9 * HOUR_MS),
        event(unique("e"), a, "nps_response", t - 5 * HOUR_MS, score=4),  # detractor
        event(unique("e"), a, "email_unsubscribe", t - 4 * HOUR_MS),  # negative points
        event(unique("e"), a, "loyalty_join", t - 60_000),
        event(unique("e"), b, "webinar_attended", t - 3 * HOUR_MS),
        event(unique("e"), b, "webinar_attended", t - 3 * HOUR_MS),  # 20: warm
        event(unique("e"), b, "nps_response", t - 2 * HOUR_MS, score=10),  # advocate
    ]
    produce_and_wait(w, docs)
    expected = expected_states(w, docs)

    for cid in (a, b):
        state = expected[cid].state
        assert state is not None
        before = now_ms()
        body = spec.check("/v1/customers/{customer_id}", s.get(f"/v1/customers/{cid}"))
        after = now_ms()
        at_clock = values_at(state, model, state.clock_ms)
        lo, hi = values_at(state, model, before), values_at(state, model, after)

        assert body["customer_id"] == cid
        assert body["clock"] == rfc3339(state.clock_ms)
        assert close(body["at_clock"]["score"], at_clock.score), (body, at_clock)
        assert body["at_clock"]["dimensions"].keys() == set(model.dimensions)
        for dim in model.dimensions:
            assert close(body["at_clock"]["dimensions"][dim], at_clock.dimensions[dim]), dim
            assert between(body["dimensions"][dim], lo.dimensions[dim], hi.dimensions[dim]), dim
        assert between(body["score"], lo.score, hi.score)
        assert close(body["score"], sum(body["dimensions"].values()))
        assert body["tier"] == state.tier_name(model)
        assert body["segments"] == list(state.segment_names(model))
        assert body["nps"] == {
            "last_score": state.nps_score,
            "category": state.nps_category,
            "answered_at": rfc3339(state.nps_at_ms) if state.nps_at_ms is not None else None,
        }
        assert body["last_event_at"] == rfc3339(
            max(d["timestamp"] for d in docs if d["customer_id"] == cid)
        )
        assert (
            body["events_applied"]
            == state.events_applied
            == Counter(d["customer_id"] for d in docs)[cid]
        )
        crossing = next_crossing(state, model)
        assert crossing is not None  # both decay into a change some day
        assert body["next_crossing"] == rfc3339(crossing)
        assert (body["model"], body["model_version"]) == (model.name, model.version)
        record = w.record(cid)
        assert record is not None and body["version"] == record.version

    # what the crafted events were meant to give
    assert expected[a].state is not None and expected[b].state is not None
    assert expected[a].state.nps_category == "detractor"
    assert expected[b].state.tier_name(model) == "warm"
    assert "advocate" in expected[b].state.segment_names(model)

    # a bad id (a space, as the path encodes it), an over-long one, an unknown one
    for path in ("/v1/customers/bad%20id", f"/v1/customers/{'x' * 129}"):
        reply = s.get(path)
        assert reply.status == 400, path
        assert (
            spec.check("/v1/customers/{customer_id}", reply)["error"]["code"] == "bad_customer_id"
        )
    reply = s.get(f"/v1/customers/{tag}-nobody")
    assert reply.status == 404
    err = spec.check("/v1/customers/{customer_id}", reply)["error"]
    assert err["code"] == "unknown_customer" and f"{tag}-nobody" in err["message"]


def test_customer_ids_that_need_escaping(served: dict[str, Served], spec: Spec) -> None:
    """Ids with characters that are special in URLs or Redis keys round-trip."""
    s = served["api"]
    tag = unique("esc")
    ids = [f"{tag}-{{x}}%25", f"{tag}-é?#&", f"{tag}-[a]:b", f"{tag}-a/b", f"{tag}-a%2Fb"]
    docs = [event(unique("e"), cid, "webinar_attended", now_ms() - 1000) for cid in ids]
    produce_and_wait(s.worker, docs)
    for cid in ids:
        reply = s.get("/v1/customers/" + urllib.parse.quote(cid, safe=""))
        assert reply.status == 200, (cid, reply.body)
        body = spec.check("/v1/customers/{customer_id}", reply)
        assert body["customer_id"] == cid and body["events_applied"] == 1


# --------------------------------------------------------------------------- explain


def test_explain_sums_to_dimensions_and_keeps_the_latest_events(
    served: dict[str, Served], spec: Spec
) -> None:
    s = served["api"]
    w, model = s.worker, s.model
    cid = unique("expl")
    t = now_ms()
    types = [
        ("email_open", 40), ("email_click", 30), ("content_download", 25),
        ("webinar_attended", 20), ("loyalty_join", 10), ("email_unsubscribe", 5),
        ("web_visit", 3), ("review_submitted", 2),
    ]  # fmt: skip
    docs = [event(unique("e"), cid, typ, t - hours * HOUR_MS) for typ, hours in types]
    produce_and_wait(w, docs)
    state = expected_states(w, docs)[cid].state
    assert state is not None

    reply = s.get(f"/v1/customers/{cid}/explain")
    body = spec.check("/v1/customers/{customer_id}/explain", reply)
    at = ms_of(body["at"])
    assert body["customer_id"] == cid
    # each event type maps to one dimension: its types' contributions add up to its value
    assert set(body["by_event_type"]) == {typ for typ, _ in types}
    per_dim: dict[str, float] = Counter()
    for typ, value in body["by_event_type"].items():
        per_dim[model.event_types[typ].dimension] += value
    for dim in model.dimensions:
        assert close(per_dim.get(dim, 0.0), body["by_dimension"][dim]), dim
        # ``at`` is rendered to the millisecond: the value lies within that millisecond
        lo, hi = values_at(state, model, at), values_at(state, model, at + 1)
        assert between(body["by_dimension"][dim], lo.dimensions[dim], hi.dimensions[dim]), dim
    assert close(body["score"], sum(body["by_dimension"].values()))
    magnitudes = [abs(v) for v in body["by_event_type"].values()]
    assert magnitudes == sorted(magnitudes, reverse=True)

    # the latest EXPLAIN_EVENTS events by event time, largest contribution first
    recent = body["recent_events"]
    assert len(recent) == EXPLAIN_EVENTS
    newest = sorted(docs, key=lambda d: d["timestamp"], reverse=True)[:EXPLAIN_EVENTS]
    assert {r["event_id"] for r in recent} == {d["event_id"] for d in newest}
    by_id = {d["event_id"]: d for d in docs}
    for r in recent:
        doc = by_id[r["event_id"]]
        et = model.event_types[doc["type"]]
        assert (r["type"], r["timestamp_ms"]) == (doc["type"], doc["timestamp"])
        assert r["timestamp"] == rfc3339(doc["timestamp"])
        assert r["points"] == et.points
        half_life = model.half_life_ms(et.dimension)
        decay = (
            0.5 ** ((at - doc["timestamp"]) / half_life),
            0.5 ** ((at + 1 - doc["timestamp"]) / half_life),
        )
        assert between(r["contribution"], et.points * decay[0], et.points * decay[1])
    contributions = [abs(r["contribution"]) for r in recent]
    assert contributions == sorted(contributions, reverse=True)

    for path, status, code in (
        ("/v1/customers/bad%20id/explain", 400, "bad_customer_id"),
        (f"/v1/customers/{cid}-nobody/explain", 404, "unknown_customer"),
    ):
        reply = s.get(path)
        assert reply.status == status, path
        assert spec.check("/v1/customers/{customer_id}/explain", reply)["error"]["code"] == code


# --------------------------------------------------------------------------- tiers


def tier_table(s: Served, spec: Spec) -> dict[str, dict[str, int]]:
    body = spec.check("/v1/tiers", s.get("/v1/tiers"))
    assert body["model"] == s.model.name
    assert [t["name"] for t in body["tiers"]] == [t.name for t in s.model.tiers]
    assert [t["threshold"] for t in body["tiers"]] == [t.threshold for t in s.model.tiers]
    return {
        t["name"]: {k: v for k, v in t.items() if k not in ("name", "threshold")}
        for t in body["tiers"]
    }


def test_tier_counts_and_moves(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    w, model = s.worker, s.model
    settle_decay(w)  # no customer of an earlier test changes tier under us
    before = tier_table(s, spec)
    tag = unique("tier")
    t = now_ms()
    docs: list[dict[str, Any]] = []
    # webinars at one instant, 10 points each: 1 stays cold, 2 make warm, 6 hot (a hot
    # customer goes through warm: two moves in the last hour)
    plan = {"cold": (3, 1), "warm": (4, 2), "hot": (3, 6)}
    for tier, (customers, webinars) in plan.items():
        for i in range(customers):
            cid = f"{tag}-{tier}-{i}"
            docs += [event(unique("e"), cid, "webinar_attended", t) for _ in range(webinars)]
    produce_and_wait(w, docs)
    folded = expected_states(w, docs)

    finals = Counter(f.state.tier_name(model) for f in folded.values() if f.state is not None)
    assert finals == {"cold": 3, "warm": 4, "hot": 3}
    moves = [c for f in folded.values() for c in f.changes if c.kind == "tier"]
    entered = Counter(c.to_tier for c in moves)
    left = Counter(c.from_tier for c in moves)
    assert entered == {"warm": 7, "hot": 3} and left == {"cold": 7, "warm": 3}
    assert all(c.occurred_at_ms == t for c in moves)

    after = tier_table(s, spec)
    for tier in (x.name for x in model.tiers):
        delta = {k: after[tier][k] - before[tier][k] for k in after[tier]}
        assert delta == {
            "customers": finals[tier],
            "entered_last_hour": entered[tier],
            "entered_last_day": entered[tier],
            "left_last_hour": left[tier],
            "left_last_day": left[tier],
        }, tier
    # the counts are those of the stored records: every customer of this worker
    stored: Counter[str] = Counter()
    for key in w.redis.scan_iter(match=w.keys.state("*"), count=1000):
        raw = w.redis.get(key)
        if raw is not None:
            state = decode_state(decode_record(raw).state or b"", model)
            stored[model.tiers[state.tier].name] += 1
    assert sum(stored.values()) > 0
    for tier in (x.name for x in model.tiers):
        assert after[tier]["customers"] == stored[tier], tier


# --------------------------------------------------------------------------- segments


def segment_counts(s: Served, spec: Spec) -> dict[str, int]:
    body = spec.check("/v1/segments", s.get("/v1/segments"))
    assert body["model"] == s.model.name
    assert [x["name"] for x in body["segments"]] == [r.name for r in s.model.segments]
    return {x["name"]: x["customers"] for x in body["segments"]}


MEMBERS = "/v1/segments/{name}/members"


def page(
    s: Served, spec: Spec, name: str, cursor: str | None, limit: int
) -> tuple[list[str], str | None]:
    params: dict[str, object] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    reply = s.get(f"/v1/segments/{name}/members{q(**params)}")
    assert reply.status == 200, reply.body
    body = spec.check(MEMBERS, reply)
    assert body["segment"] == name and len(body["members"]) <= limit
    return body["members"], body["next_cursor"]


def walk(s: Served, spec: Spec, name: str, limit: int) -> list[str]:
    out: list[str] = []
    cursor: str | None = None
    while True:
        members, cursor = page(s, spec, name, cursor, limit)
        out += members
        if cursor is None:
            return out
        assert members and cursor == members[-1]


def test_segment_counts_and_members_pages(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    w, model = s.worker, s.model
    before = segment_counts(s, spec)
    tag = unique("seg")
    t = now_ms()
    docs = [
        event(unique("e"), f"{tag}-p{i}", "nps_response", t - 1000, score=9 + i % 2)
        for i in range(7)
    ]
    docs += [event(unique("e"), f"{tag}-d{i}", "nps_response", t - 1000, score=i) for i in range(2)]
    produce_and_wait(w, docs)
    folded = expected_states(w, docs)
    offline: dict[str, set[str]] = {r.name: set() for r in model.segments}
    for cid, f in folded.items():
        assert f.state is not None
        for name in f.state.segment_names(model):
            offline[name].add(cid)
    assert len(offline["advocate"]) == 7 and len(offline["detractor_at_risk"]) == 2

    after = segment_counts(s, spec)
    assert {k: after[k] - before[k] for k in after} == {k: len(v) for k, v in offline.items()}

    # every page of 2, then all of them at once: the same members, in order, once each
    listed = walk(s, spec, "advocate", limit=2)
    assert len(listed) == len(set(listed)) == after["advocate"]
    assert listed == sorted(listed, key=lambda m: m.encode())
    assert {m for m in listed if m.startswith(tag)} == offline["advocate"]
    assert walk(s, spec, "advocate", limit=1000) == listed
    assert {m for m in walk(s, spec, "detractor_at_risk", 2) if m.startswith(tag)} == offline[
        "detractor_at_risk"
    ]


def test_members_pages_while_members_change(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    w = s.worker
    # our customers share a prefix, so they sort together; the walk starts just before them
    tag = "zz-" + unique("walk")
    t = now_ms()
    initial = [f"{tag}-{i:02d}" for i in range(0, 20, 2)]  # -00, -02, ... -18
    produce_and_wait(
        w, [event(unique("e"), c, "nps_response", t - 5000, score=10) for c in initial]
    )

    def ours(members: list[str]) -> list[str]:
        return [m for m in members if m.startswith(tag)]

    members, cursor = page(s, spec, "advocate", f"{tag}-", 2)  # starts just before ours
    seen = list(members)
    assert seen == initial[:2]
    # between pages: two members leave (one already listed, one not yet), two join (one
    # before the cursor, one after), answering again as detractors / as promoters
    leave = [initial[0], initial[5]]
    join = [f"{tag}-01", f"{tag}-11"]
    changes = [event(unique("e"), c, "nps_response", t - 1000, score=0) for c in leave]
    changes += [event(unique("e"), c, "nps_response", t - 1000, score=9) for c in join]
    produce_and_wait(w, changes)
    states = w.states(leave + join)
    assert all(
        st is not None and "advocate" not in st.segment_names(w.model)
        for st in (states[c] for c in leave)
    )
    assert all(
        st is not None and "advocate" in st.segment_names(w.model)
        for st in (states[c] for c in join)
    )
    while cursor is not None:
        members, cursor = page(s, spec, "advocate", cursor, 2)
        seen += members
        if len(ours(seen)) == 6:  # halfway: one more leaves, one more joins after the cursor
            produce_and_wait(
                w,
                [
                    event(unique("e"), initial[8], "nps_response", t - 500, score=3),
                    event(unique("e"), f"{tag}-19", "nps_response", t - 500, score=10),
                ],
            )
            leave.append(initial[8])
            join.append(f"{tag}-19")
    seen = ours(seen)
    stayed = [c for c in initial if c not in leave]
    assert len(seen) == len(set(seen)), seen  # nothing twice
    assert set(stayed) <= set(seen), sorted(set(stayed) - set(seen))  # nothing skipped
    # paging is by id: those that joined after the cursor are listed, the one that joined
    # behind it is not, and those that left before the cursor reached them are not
    assert f"{tag}-11" in seen and f"{tag}-19" in seen and f"{tag}-01" not in seen
    assert initial[5] not in seen and initial[8] not in seen and initial[0] in seen
    assert seen == sorted(seen)


def test_members_errors(served: dict[str, Served], spec: Spec) -> None:
    s = served["api"]
    reply = s.get("/v1/segments/no_such_segment/members")
    assert reply.status == 404
    assert spec.check(MEMBERS, reply)["error"]["code"] == "unknown_segment"
    for params, code in (
        ({"limit": 0}, "bad_limit"),
        ({"limit": 5000}, "bad_limit"),
        ({"limit": -1}, "bad_limit"),
        ({"limit": "abc"}, "bad_limit"),
        ({"cursor": "bad cursor"}, "bad_cursor"),
        ({"cursor": "x" * 129}, "bad_cursor"),
        ({"cursor": "tab\there"}, "bad_cursor"),
    ):
        reply = s.get(f"/v1/segments/advocate/members{q(**params)}")
        assert reply.status == 400, params
        assert spec.check(MEMBERS, reply)["error"]["code"] == code, params
    for limit in (1, 1000):  # the bounds are allowed
        assert s.get(f"/v1/segments/advocate/members{q(limit=limit)}").status == 200


# --------------------------------------------------------------------------- NPS


def test_nps_windows_and_by_tier(served: dict[str, Served], spec: Spec) -> None:
    s = served["secured"]
    w, model = s.worker, s.model
    token = API_TOKENS[0]
    tag = unique("nps")
    today = datetime.now(tz=UTC).date()
    days = [today - timedelta(days=k) for k in (3, 2, 1)]

    def at(day: date, hour: int) -> int:
        return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)

    def nps_event(cid: str, ts: int, score: int) -> dict[str, Any]:
        return event(unique("e"), cid, "nps_response", ts, score=score)

    def webinars(cid: str, ts: int, n: int) -> list[dict[str, Any]]:
        return [event(unique("e"), cid, "webinar_attended", ts) for _ in range(n)]

    d0, d1, d2 = days
    docs = [
        # day 0: a warm promoter, a cold detractor, and one at 18 points whose answer's own
        # 3 points make it warm: counted as cold
        *webinars(f"{tag}-a", at(d0, 9), 2), nps_event(f"{tag}-a", at(d0, 10), 9),
        nps_event(f"{tag}-b", at(d0, 11), 3),
        *webinars(f"{tag}-f", at(d0, 12), 1),
        event(unique("e"), f"{tag}-f", "survey_completed", at(d0, 12)),
        event(unique("e"), f"{tag}-f", "survey_completed", at(d0, 12)),
        nps_event(f"{tag}-f", at(d0, 12), 10),
        # day 1: a hot passive, a cold passive, and b again: now a cold promoter
        *webinars(f"{tag}-c", at(d1, 8), 6), nps_event(f"{tag}-c", at(d1, 9), 7),
        nps_event(f"{tag}-d", at(d1, 10), 8),
        nps_event(f"{tag}-b", at(d1, 11), 10),
        # day 2: f (warm since its answer) a detractor, a (still warm) a detractor
        nps_event(f"{tag}-f", at(d2, 9), 6),
        nps_event(f"{tag}-a", at(d2, 10), 0),
    ]  # fmt: skip
    produce_and_wait(w, docs)
    # the hand count per (day, tier): promoters, passives, detractors
    hand = {
        (d0, "cold"): (1, 0, 1), (d0, "warm"): (1, 0, 0),
        (d1, "cold"): (1, 1, 0), (d1, "hot"): (0, 1, 0),
        (d2, "warm"): (0, 0, 2),
    }  # fmt: skip
    folded = fold((dumps(d) for d in docs), model)
    core = Counter(
        (date.fromisoformat(day), tier, cat) for f in folded.values() for day, tier, cat in f.nps
    )
    cats = ("promoter", "passive", "detractor")
    assert core == Counter(
        {
            (d, tier, c): n
            for (d, tier), ns in hand.items()
            for c, n in zip(cats, ns, strict=True)
            if n
        }
    )

    def expect(lo: date, hi: date, tier: str | None) -> dict[str, Any]:
        p = pa = de = 0
        for (day, t), (x, y, z) in hand.items():
            if lo <= day <= hi and tier in (None, t):
                p, pa, de = p + x, pa + y, de + z
        n = p + pa + de
        return {
            "nps": nps(p, pa, de),
            "promoters": p,
            "passives": pa,
            "detractors": de,
            "responses": n,
        }

    def get(**params: object) -> Reply:
        return s.get(f"/v1/nps{q(**params)}", token=token)

    windows = [
        (d0, d2),
        (d0, d0),
        (d1, d2),
        (d2, d2),
        (d0, d1),
        (d0 - timedelta(days=40), d0 - timedelta(days=1)),
    ]
    for lo, hi in windows:
        reply = get(**{"from": lo.isoformat(), "to": hi.isoformat(), "by": "tier"})
        body = spec.check("/v1/nps", reply)
        assert (body["from"], body["to"]) == (lo.isoformat(), hi.isoformat())
        assert body["overall"] == expect(lo, hi, None), (lo, hi)
        assert body["by_tier"] == {t.name: expect(lo, hi, t.name) for t in model.tiers}, (lo, hi)
    # all three days: 3 promoters, 2 passives, 3 detractors: NPS 0
    assert expect(d0, d2, None)["nps"] == 0 and expect(d0, d0, None)["nps"] == 33
    # without ``by``: overall only; the default window is the last 30 days, up to today
    body = spec.check("/v1/nps", get(**{"from": d0.isoformat(), "to": d2.isoformat()}))
    assert "by_tier" not in body and body["overall"] == expect(d0, d2, None)
    body = spec.check("/v1/nps", s.get("/v1/nps", token=token))
    server_today = date.fromisoformat(body["to"])  # the UTC day may have turned since
    assert server_today in (today, today + timedelta(days=1))
    assert body["from"] == (server_today - timedelta(days=29)).isoformat()
    assert body["overall"] == expect(d0, d2, None)
    # a window of exactly 366 days is allowed
    assert get(**{"from": "2020-01-01", "to": "2020-12-31"}).status == 200

    for params, code in (
        ({"from": d2.isoformat(), "to": d0.isoformat()}, "bad_window"),  # reversed
        ({"from": "2019-01-01", "to": "2020-01-02"}, "bad_window"),  # 367 days
        ({"from": "2023-02-30"}, "bad_window"),  # not a calendar date
        ({"from": "2023-2-3"}, "bad_window"),
        ({"to": "yesterday"}, "bad_window"),
        ({"from": "20230203"}, "bad_window"),
        ({"by": "segment"}, "bad_by"),
    ):
        reply = get(**params)
        assert reply.status == 400, params
        assert spec.check("/v1/nps", reply)["error"]["code"] == code, params


# --------------------------------------------------------------------------- auth


V1_PATHS = [
    "/v1/tiers",
    "/v1/segments",
    "/v1/segments/advocate/members",
    "/v1/nps",
    "/v1/customers/probe-1",
    "/v1/customers/probe-1/explain",
    "/v1/customers/nobody",  # 401 before 404: existence is not revealed
]


REFUSED: list[dict[str, str]] = [
    {},
    {"token": "t3"},
    {"token": "t1x"},
    {"token": OPS_TOKEN},  # the ops token is not an API token
    {"auth": "t1"},
    {"auth": "Basic dDE6dDE="},
    {"auth": "Bearer"},
    {"token": ""},
    {"token": "t1\xff"},  # not UTF-8 on the wire: refused, not a 500
]


def template_of(path: str) -> str:
    if path.startswith("/v1/customers/"):
        return "/v1/customers/{customer_id}" + ("/explain" if path.endswith("/explain") else "")
    if path.startswith("/v1/segments/"):
        return MEMBERS
    return path


def test_auth_on_v1_and_ops_endpoints(served: dict[str, Served], spec: Spec) -> None:
    s = served["secured"]
    for path in V1_PATHS:
        for kw in REFUSED:
            reply = s.get(path, **kw)
            assert reply.status == 401, (path, kw)
            assert spec.check(template_of(path), reply)["error"]["code"] == "unauthorized"
        # the scheme is case-insensitive (RFC 7235), spaces around the token do not count
        for auth in (*(f"Bearer {t}" for t in API_TOKENS), "bearer t1", "BEARER  t2 "):
            reply = s.get(path, auth=auth)
            assert reply.status == (404 if path.endswith("nobody") else 200), (path, auth)
            spec.check(template_of(path), reply)
    # the ops endpoints take the ops token, not an API token
    for path in ("/metrics", "/readyz"):
        for kw in ({}, {"token": API_TOKENS[0]}, {"token": "nope"}):
            reply = s.get(path, **kw)
            assert reply.status == 401, (path, kw)
            assert spec.check(path, reply)["error"]["code"] == "unauthorized"
    assert s.get("/readyz", token=OPS_TOKEN).status == 200
    metrics = s.get("/metrics", token=OPS_TOKEN)
    assert metrics.status == 200 and metrics.headers.get_content_type() == "text/plain"
    # liveness is always open
    assert spec.check("/healthz", s.get("/healthz"))["status"] == "ok"


def test_no_auth_configured_and_faust_views_off(served: dict[str, Served], spec: Spec) -> None:
    open_ = served["api"]
    for path in ("/v1/tiers", "/v1/segments", "/v1/nps", "/readyz", "/metrics", "/healthz"):
        assert open_.get(path).status == 200, path
        assert open_.get(path, token="anything").status == 200, path  # a token is ignored
    for s in (served["api"], served["secured"]):
        for path in ("/router/", "/router", "/table/", "/table/x/", "/graph/", "/stats/"):
            for kw in ({}, {"token": "t1"}, {"token": OPS_TOKEN}):
                assert s.get(path, **kw).status == 404, (s.worker.name, path, kw)


# --------------------------------------------------------------------------- health


def test_readyz_follows_redis(served: dict[str, Served], spec: Spec) -> None:
    s = served["ready"]
    assert s.redis is not None

    def readyz() -> tuple[int, dict[str, Any]]:
        reply = s.get("/readyz")
        return reply.status, spec.check("/readyz", reply)

    status, body = readyz()
    assert status == 200 and body["ready"] is True, body
    checks = body["checks"]
    assert checks["redis"]["ok"] and checks["redis"]["rtt_ms"] >= 0
    assert checks["partitions"]["ok"] and checks["partitions"]["assigned"] >= 8  # 2 topics x 4
    assert checks["lag"]["ok"] and checks["broker"] == {"ok": True}

    s.redis.stop()
    down = s.worker.wait(lambda: (r := readyz())[0] == 503 and r, timeout=20, what="/readyz 503")
    body = down[1]
    assert body["ready"] is False and body["checks"]["redis"]["ok"] is False, body
    assert body["checks"]["redis"]["error"]
    assert spec.check("/healthz", s.get("/healthz"))["status"] == "ok"  # alive all along

    s.redis = restart_redis(s.redis)
    back = s.worker.wait(lambda: (r := readyz())[0] == 200 and r, timeout=30, what="/readyz 200")
    assert back[1]["ready"] is True and back[1]["checks"]["redis"]["ok"] is True
    s.worker.wait_ready()  # and it scores again


# --------------------------------------------------------------------------- metrics


def scrape(s: Served, **kw: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by prometheus_client: (sample name, labels) -> value."""
    reply = s.get("/metrics", **kw)
    assert reply.status == 200
    assert reply.headers.get_content_type() == "text/plain"
    assert reply.headers.get_param("version") == "0.0.4"
    families = list(text_string_to_metric_families(reply.body.decode()))
    s.extra["families"] = {f.name: f for f in families}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for f in families
        for sample in f.samples
    }


def test_metrics_move(served: dict[str, Served]) -> None:
    s = served["api"]
    w = s.worker
    assert s.get("/readyz").status == 200  # observes a Redis round trip
    before = scrape(s)
    tag = unique("metrics")
    t = now_ms()
    docs = [
        event(unique("e"), f"{tag}-w{i}", "webinar_attended", t - 1000)
        for i in range(2)
        for _ in range(2)
    ]
    docs.append(event(unique("e"), f"{tag}-adv", "nps_response", t - 1000, score=10))
    docs.append(docs[0])  # a duplicate
    sent = w.produce_events(docs)
    bad = w.produce([b"{not json"], w.settings.input_topic)[0]
    w.wait_processed({d["customer_id"]: s_ for d, s_ in zip(docs, sent, strict=True)})

    def get(
        metrics: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
    ) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    def delta(after: Mapping[Any, float], name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    dead = "engagement_events_dead_lettered_total"
    after = w.wait(
        lambda: (m := scrape(s)) and delta(m, dead, reason="not_json") >= 1 and m,
        timeout=30,
        what=f"the bad message at {bad} dead-lettered",
    )
    assert delta(after, "engagement_events_consumed_total") >= len(docs) + 1
    assert delta(after, "engagement_events_applied_total") == len(docs) - 1
    assert delta(after, "engagement_events_duplicate_total") == 1
    assert delta(after, dead, reason="not_json") == 1
    published = "engagement_segment_changes_published_total"
    assert delta(after, published, type="engagement.tier.changed") >= 2
    assert delta(after, published, type="engagement.segment.entered") >= 1

    families = s.extra["families"]
    for name in (
        "engagement_batch_size",
        "engagement_batch_processing_seconds",
        "engagement_redis_roundtrip_seconds",
    ):
        family = families[name]
        assert family.type == "histogram", name
        buckets = [x for x in family.samples if x.name == name + "_bucket"]
        assert buckets and buckets[-1].labels["le"] == "+Inf"
        counts = [x.value for x in buckets]
        assert counts == sorted(counts)  # cumulative
        count = get(after, name + "_count")
        assert count == counts[-1] and count > 0, name
        assert get(after, name + "_sum") > 0, name
    assert get(after, "engagement_batch_size_count") > get(before, "engagement_batch_size_count")

    # per-partition gauges, for every partition the worker owns
    parts = {str(p) for p in range(w.settings.partitions)}
    for name in ("engagement_due_index_size",):
        assert families[name].type == "gauge"
        assert {x.labels["partition"] for x in families[name].samples} == parts
    lag = {
        (x.labels["topic"], x.labels["partition"])
        for x in families["engagement_consumer_lag_messages"].samples
    }
    assert lag == {
        (topic, p)
        for topic in (w.settings.input_topic, w.settings.by_customer_topic)
        for p in parts
    }
    for name in ("engagement_event_time_seconds", "engagement_event_time_lag_seconds"):
        assert families[name].type == "gauge"
        assert {x.labels["partition"] for x in families[name].samples} <= parts
    owners = {str(x.partition) for x in sent}
    for p in owners:
        assert get(after, "engagement_event_time_seconds", partition=p) >= (t - 1000) / 1000
        assert get(after, "engagement_event_time_lag_seconds", partition=p) >= 0

"""Talking to the served workers: HTTP GETs, the OpenAPI check of every body, and the
expected values (the offline fold of what a test produced)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message as HttpHeaders
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import yaml

from scoring import Model
from stream_app.devkit.stack import LocalService
from tests.integration.workers import REPO, Worker, dumps, now_ms
from tests.support.diff import close
from tests.support.fold import Folded, catch_up, fold
from tests.support.kafka import Sent

OPENAPI = REPO / "docs" / "openapi.yaml"
API_TOKENS = ("t1", "t2")
OPS_TOKEN = "ops-secret"
EXPLAIN_EVENTS = 3
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MEMBERS = "/v1/segments/{name}/members"


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: HttpHeaders
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers to check (308 for a merged-away customer), not followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# no proxies from the environment: the worker is on loopback
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def http_get(port: int, path: str, *, token: str | None = None, auth: str | None = None) -> Reply:
    """GET ``path`` (already URL-encoded); ``token`` sends ``Bearer <token>``, ``auth`` the
    raw ``Authorization`` header."""
    return http_request(port, path, token=token, auth=auth)


def http_post(port: int, path: str, body: bytes, *, token: str | None = None) -> Reply:
    """POST ``body`` to ``path``; ``token`` sends ``Bearer <token>``."""
    return http_request(port, path, data=body, token=token)


def http_request(
    port: int,
    path: str,
    *,
    data: bytes | None = None,
    token: str | None = None,
    auth: str | None = None,
) -> Reply:
    """A GET, or a POST of ``data``, to ``path``: the reply, whatever its status."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
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

    def post(self, path: str, body: bytes, **kw: Any) -> Reply:
        return http_post(self.port, path, body, **kw)

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

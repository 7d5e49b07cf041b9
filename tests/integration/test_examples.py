"""``examples/campaign_webhook.py`` against the real broker (Tansu) and a local webhook.

Real segment-change CloudEvents (the pure core's changes of simulated customers, as the
worker publishes them) go to a topic, with two republished changes (same id) and a message
that is not JSON. A local HTTP server plays the webhook: it fails its first request with 503
and refuses one event for good with 400. The consumer must deliver every watched change once,
retry the 503, skip the 400, deduplicate on the CloudEvent id, commit what it delivered (a
restart resends nothing) and remember delivered ids across restarts with ``--seen-file``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scoring import advance, apply, load_default_model, parse_event
from stream_app import jsonutil
from stream_app.contracts import cloudevent
from stream_app.devkit import simulator
from stream_app.devkit.stack import LocalService, free_port
from tests.integration.workers import REPO
from tests.support.kafka import Out, produce

pytestmark = pytest.mark.integration

NOW_MS = 1_750_000_000_000
DAY_MS = 86_400_000


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "campaign_webhook", REPO / "examples" / "campaign_webhook.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


example = _load_example()


@dataclass
class Hook:
    """The local webhook: what it received, and which ids it refuses."""

    refuse: set[str] = field(default_factory=set)
    fail_first: int = 1
    requests: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[str]:
        with self.lock:
            return [body["id"] for status, _, body in self.requests if status == 200]


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                if state.fail_first > 0:
                    state.fail_first -= 1
                    status = 503
                elif body["id"] in state.refuse:
                    status = 400
                else:
                    status = 200
                state.requests.append((status, dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/hooks/win-back"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def real_cloudevents() -> list[dict[str, Any]]:
    """The CloudEvents the worker would publish for 40 simulated customers over 90 days,
    then a quiet month (decay changes: customers enter ``lapsing``)."""
    model = load_default_model()
    config = simulator.SimConfig.ending(NOW_MS, 90, customers=40, seed=9)
    states: dict[str, Any] = {}
    changes = []
    for doc in simulator.history(config):
        ev = parse_event(jsonutil.dumps(doc), model, now_ms=NOW_MS)
        result = apply(states.get(ev.customer_id), ev, model)
        states[ev.customer_id] = result.state
        changes.extend(result.changes)
    for cid, state in states.items():
        changes.extend(advance(state, cid, NOW_MS + 30 * DAY_MS, model)[1])
    return [json.loads(jsonutil.dumps(cloudevent(c))) for c in changes]


def publish(brokers: str, topic: str, events: list[dict[str, Any] | bytes]) -> None:
    outs = [
        Out(e, None) if isinstance(e, bytes)
        else Out(json.dumps(e).encode(), e["subject"].encode())
        for e in events
    ]  # fmt: skip
    asyncio.run(produce(brokers, topic, outs))


def consume(config: Any, until: Callable[[Counter[str]], bool]) -> Counter[str]:
    async def bounded() -> Counter[str]:
        outcome: Counter[str] = await asyncio.wait_for(example.run(config, until=until), 90)
        return outcome

    return asyncio.run(bounded())


def test_campaign_webhook_delivers_each_change_once(
    tansu: LocalService,
    make_topics: Callable[..., dict[str, str]],
    unique_name: Callable[[str], str],
    hook: tuple[Hook, str],
    tmp_path: Path,
) -> None:
    state, url = hook
    topic = make_topics(changes=3)["changes"]
    events = real_cloudevents()
    watched = [e for e in events if e["type"] == "engagement.segment.entered"
               and e["data"]["segment"] == "lapsing"]  # fmt: skip
    assert len(watched) >= 4 and len({e["id"] for e in watched}) == len(watched)
    state.refuse = {watched[1]["id"]}
    republished = [watched[0], watched[2]]  # at-least-once upstream: same id again
    stream: list[dict[str, Any] | bytes] = [*events, *republished, b"{not json"]
    publish(tansu.url, topic, stream)
    seen_file = tmp_path / "seen.txt"
    config = example.Config(
        brokers=tansu.url, webhook=url, topic=topic, group=unique_name("campaign"),
        seen_file=seen_file, backoff_s=0.05, max_backoff_s=0.2, session_timeout_ms=6000,
    )  # fmt: skip

    outcomes = consume(config, until=lambda o: sum(o.values()) >= len(stream))
    assert sum(outcomes.values()) == len(stream)
    assert outcomes["sent"] == len(watched) - 1 and outcomes["refused"] == 1
    assert outcomes["duplicate"] == 2 and outcomes["unreadable"] == 1
    assert outcomes["ignored"] == len(events) - len(watched)
    # each watched change accepted exactly once (the refused one: tried once, not again)
    accepted = state.accepted()
    assert sorted(accepted) == sorted(e["id"] for e in watched if e["id"] not in state.refuse)
    statuses = Counter(status for status, _, _ in state.requests)
    assert statuses == {200: len(watched) - 1, 503: 1, 400: 1}
    by_id = {e["id"]: e for e in watched}
    for _, headers, body in state.requests:
        assert headers["Content-Type"].startswith("application/cloudevents+json")
        assert headers["Idempotency-Key"] == body["id"]
        assert body == by_id[body["id"]]  # the CloudEvent as published
    remembered = seen_file.read_text().split()  # each id once, delivered or refused
    assert sorted(remembered) == sorted(e["id"] for e in watched)

    # a restart in the same group: offsets were committed, nothing is read again
    markers = [cloudevent_like(p) for p in range(3)]
    publish_to_partitions(tansu.url, topic, markers)
    again = consume(config, until=lambda o: o["ignored"] >= 3)
    assert again == {"ignored": 3}
    assert len(state.requests) == len(watched) + 1

    # a new group reads everything again: the seen-file stops every resend
    fresh = example.Config(**{**config.__dict__, "group": unique_name("campaign-2")})
    total = len(stream) + 3
    replay = consume(fresh, until=lambda o: sum(o.values()) >= total)
    assert replay["sent"] == 0 and replay["duplicate"] == len(watched) + 2
    assert len(state.requests) == len(watched) + 1


def cloudevent_like(n: int) -> dict[str, Any]:
    """A change the example does not watch (a tier change), one per partition."""
    return {"id": f"marker-{n}", "type": "engagement.tier.changed", "subject": f"m{n}",
            "data": {"segment": "warm"}}  # fmt: skip


def publish_to_partitions(brokers: str, topic: str, events: list[dict[str, Any]]) -> None:
    outs = [Out(json.dumps(e).encode(), None, p) for p, e in enumerate(events)]
    asyncio.run(produce(brokers, topic, outs))

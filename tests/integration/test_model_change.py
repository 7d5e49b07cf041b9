"""Changing the scoring model of a running deployment, built from current state.

A thresholds-only change (tiers): ``model plan`` reports it, ``model shadow --from-current``
builds the shadow at once, ``/v1/customers/{id}?model=shadow`` serves it, ``model promote``
switches; the ``model`` changes published equal an offline comparison (the same events
folded through the pure core under the model in force, derived under the new one), and
after the switch the new model publishes.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from scoring.migrate import derive
from stream_app.devkit.stack import LocalService, free_port
from stream_app.store.keys import Keys
from tests.integration.modelchange import (
    THRESHOLDS,
    disagreements,
    downstream_view,
    expected_switch,
    http_json,
    matches,
    model_changes,
    model_cli,
    model_of,
    ok,
    registry,
    same_ids_same_contents,
    stored_states,
    traffic,
    variant,
    wait_processed_in,
)
from tests.integration.workers import (
    OLD_MS,
    start_worker,
    stop_all,
    unique,
)
from tests.support.fold import fold
from tests.support.kafka import Sent, in_offset_order

pytestmark = pytest.mark.integration


def last_sent(docs: list[dict[str, object]], sent: list[Sent]) -> dict[str, Sent]:
    last: dict[str, Sent] = {}
    for doc, s in zip(docs, sent, strict=True):
        cid = str(doc["customer_id"])
        if cid not in last or s.offset > last[cid].offset:
            last[cid] = s
    return last


def test_a_thresholds_change_built_from_current_state(
    tansu: LocalService, redis_server: LocalService, tmp_path: Path
) -> None:
    new_file = variant(tmp_path, "thresholds", *THRESHOLDS)
    port = free_port()
    web = {"ENGAGEMENT_WEB_ENABLED": "true", "ENGAGEMENT_WEB_PORT": str(port)}
    w = start_worker(tansu, redis_server, tmp_path / "w", name="fc", **web)
    try:
        w.wait_ready(at_ms=OLD_MS)
        old, new = w.model, model_of(new_file)
        tag = unique("fc")
        docs = traffic(60, 6, seed=3, tag=tag)
        sent = w.produce_events(docs)
        w.wait_processed(last_sent(docs, sent))
        customers = sorted({str(d["customer_id"]) for d in docs})
        offline = fold(in_offset_order(docs, sent), old)
        before = {cid: offline[cid].state for cid in customers}
        derived = {cid: derive(s, old, new) for cid, s in before.items() if s is not None}
        assert stored_states(w, old.name, old, customers) == before  # nothing crossed yet

        plan = json.loads(ok(model_cli(w, "plan", str(new_file), "--from-current", "--json")))
        assert plan["from_current_possible"] and plan["differences"]

        shown = ok(model_cli(w, "shadow", str(new_file), "--from-current"))
        assert "default@2" in shown
        cid = next(c for c in customers if derived[c].tier != before[c].tier)  # type: ignore[union-attr]
        path = f"/v1/customers/{urllib.parse.quote(cid)}"
        w.wait(lambda: http_json(port, path)[0] == 200, what="the read API")
        assert http_json(port, path)[1]["tier"] == before[cid].tier_name(old)  # type: ignore[union-attr]
        shadow_path = path + "?model=shadow"  # (the worker reads the registry every 0.5 s)
        w.wait(lambda: http_json(port, shadow_path)[0] == 200, what="the shadow's API")
        status, body = http_json(port, shadow_path)
        assert status == 200 and body["tier"] == derived[cid].tier_name(new)
        assert body["model_version"] == 2

        out = ok(model_cli(w, "promote", "--wait", "60"))
        assert "every partition switched" in out, out
        at = registry(w).switched_at
        assert http_json(port, path)[1]["model_version"] == 2  # served at once

        expected = expected_switch(before, old, derived, new, at)
        assert expected, "the change should move some customers"
        assert plan["promotion"]["changes"] == len(expected)  # the plan said as much
        messages = w.read_all(w.settings.output_topic)
        published = model_changes(messages)
        assert not matches({e["id"]: e for e in published}, expected)
        assert not same_ids_same_contents(published)
        assert all(e["time"] == published[0]["time"] for e in published)

        # after the switch the new model publishes, from where the switch left each customer
        more = traffic(60, 2, seed=4, tag=tag)
        sent2 = w.produce_events(more)
        wait_processed_in(w, "default@2", last_sent(more, sent2))
        after_more = fold(in_offset_order(docs + more, sent + sent2), old)
        states = stored_states(w, "default@2", new, customers)
        for c, s in states.items():
            assert s is not None
            want = derive(after_more[c].state, old, new)  # type: ignore[arg-type]
            assert s.values == want.values and s.events_applied == want.events_applied, c
        messages = w.read_all(w.settings.output_topic)
        events = [json.loads(m.value) for m in messages]
        old_ids = {d["event_id"] for d in docs}
        new_ids = {d["event_id"] for d in more}
        assert {
            e["data"]["model_version"] for e in events if e["data"]["cause_event_id"] in old_ids
        } == {1}
        assert {
            e["data"]["model_version"] for e in events if e["data"]["cause_event_id"] in new_ids
        } == {2}
        for c in customers:  # per customer (one output partition): no old model after the switch
            mine = [e["data"] for e in events if e["data"]["customer_id"] == c]
            causes = [d["cause"] for d in mine]
            if "model" in causes:
                assert all(d["model_version"] == 2 for d in mine[causes.index("model") :]), c
        view = downstream_view(messages)
        assert not disagreements({c: view.get(c, ("", frozenset())) for c in customers},
                                 states, new)  # fmt: skip

        # the previous model, kept for a rollback, is retired: its keys go
        assert "retired default v1" in ok(model_cli(w, "retire"))
        assert not w.redis.keys(Keys(w.settings.key_prefix, "default").all_pattern())
        assert json.loads(ok(model_cli(w, "show", "--json")))["shadow"] is None
    finally:
        unclean = stop_all([w])
    assert not unclean, "\n".join(unclean)

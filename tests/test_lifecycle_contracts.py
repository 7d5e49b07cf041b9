"""Erase and merge: what the worker, the CLI and the API write against the JSON Schemas in
docs/schemas/, and the admin and read API answers (no services needed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest

from scoring import Event, apply, load_default_model
from scoring.lifecycle import Request, encode_request, lifecycle_event
from scoring.merge import departure, merge
from stream_app import jsonutil
from stream_app.contracts import cloudevent, lifecycle_cloudevent
from stream_app.http.admin import AdminApi
from stream_app.http.api import ApiError, ReadApi
from stream_app.store.keys import Keys
from stream_app.store.records import LifecycleStatus
from stream_app.worker.handover import Handover, decode_handover, encode_handover
from tests.support.fakes import Collect, MemoryStore

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
MODEL = load_default_model()
T0 = 1_714_564_800_000


def validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / name).read_text("utf-8"))
    cls = jsonschema.Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def wire(doc: Any) -> Any:
    return json.loads(jsonutil.dumps(doc))


def test_lifecycle_cloudevents_fit_their_schema() -> None:
    v = validator("customer-lifecycle.schema.json")
    erased = lifecycle_cloudevent(lifecycle_event(Request("erase", "r1", "c-1", T0), MODEL))
    merged = lifecycle_cloudevent(lifecycle_event(Request("merge", "r2", "c-1", T0, "c-2"), MODEL))
    for doc in (erased, merged):
        v.validate(wire(doc))
    assert merged["data"]["into"] == "c-2" and "into" not in erased["data"]
    assert not v.is_valid({**wire(erased), "data": {**erased["data"], "into": "c-2"}})
    assert not v.is_valid({**wire(erased), "data": {**erased["data"], "score": 1.0}})


def test_changes_caused_by_a_merge_fit_the_segment_change_schema() -> None:
    v = validator("segment-change.schema.json")
    a = b = None
    for n in range(3):
        a = apply(a, Event(f"a{n}", "a", "webinar_attended", T0 + n), MODEL).state
        b = apply(b, Event(f"b{n}", "b", "review_submitted", T0 + n), MODEL).state
    a = apply(a, Event("a-nps", "a", "nps_response", T0 + 9, nps_score=10), MODEL).state
    assert a is not None and b is not None
    changes = merge(b, a, MODEL, customer_id="b", request_id="req-1").changes
    exits = departure(a, MODEL, customer_id="a", request_id="req-1")
    assert exits[0].kind == "tier" and exits[0].to_tier is None  # a leaves its tier ...
    assert len(exits) == 1 + bin(a.segments).count("1") > 1  # ... and each of its segments
    changes += exits
    assert {c.cause for c in changes} == {"merge"}
    for change in changes:
        doc = wire(cloudevent(change))
        v.validate(doc)
        assert not v.is_valid({**doc, "data": {**doc["data"], "cause_event_id": None}})


def test_requests_fit_their_schema_and_hand_overs_theirs() -> None:
    v = validator("lifecycle-request.schema.json")
    for request in (Request("erase", "r1", "c-1", T0), Request("merge", "r2", "c-1", T0, "c-2")):
        v.validate(json.loads(encode_request(request)))
    assert not v.is_valid({"event_id": "r", "customer_id": "c", "timestamp": T0,
                           "type": "engagement.customer.merge"})  # fmt: skip
    h = Handover("r2", "c-1", "c-2", b"\x03state", None, 2)
    validator("handover.schema.json").validate(json.loads(encode_handover(h)))
    assert decode_handover(encode_handover(h)) == h


def test_the_admin_api_sends_valid_requests_keyed_by_customer() -> None:
    sent = Collect()
    admin = AdminApi(sent, "in")
    status, body = asyncio.run(admin.merge("c-1", {"into": "c-2"}))
    assert status == 202 and (body["customer_id"], body["into"]) == ("c-1", "c-2")
    status, body = asyncio.run(admin.erase("c-3"))
    assert status == 202 and body["type"] == "engagement.customer.erase"
    assert [(m.topic, m.key) for m in sent.sent] == [("in", b"c-1"), ("in", b"c-3")]
    v = validator("lifecycle-request.schema.json")
    for m in sent.sent:
        v.validate(json.loads(m.value))
    assert asyncio.run(admin.merge("c-1", {"into": "c-1"}))[0] == 400
    assert asyncio.run(admin.merge("c-1", ["c-2"]))[1]["error"]["code"] == "bad_body"
    assert asyncio.run(admin.erase("a b"))[1]["error"]["code"] == "bad_customer_id"
    assert len(sent.sent) == 2


class Statuses:
    async def lookup(self, ids: Sequence[str]) -> dict[str, LifecycleStatus]:
        known = {"gone": LifecycleStatus("suppressed"), "old": LifecycleStatus("alias", "n{w}")}
        return {cid: known[cid] for cid in ids if cid in known}


@pytest.mark.parametrize(
    ("cid", "path", "status", "code", "location"),
    [
        ("gone", "customer", 404, "erased", None),
        ("old", "customer", 308, "merged", "/v1/customers/n%7Bw%7D"),
        ("old", "explain", 308, "merged", "/v1/customers/n%7Bw%7D/explain"),
        ("never", "customer", 404, "unknown_customer", None),
    ],
)
def test_the_read_api_answers_for_erased_and_merged_customers(
    cid: str, path: str, status: int, code: str, location: str | None
) -> None:
    api = ReadApi(MODEL, Keys("es", "default"), cast(Any, MemoryStore()), cast(Any, None),
                  cast(Any, None), lifecycle=Statuses())  # fmt: skip
    ask = api.customer if path == "customer" else api.explain
    with pytest.raises(ApiError) as info:
        asyncio.run(ask(cid))
    assert info.value.answer[0] == status and info.value.answer[1]["error"]["code"] == code
    assert info.value.headers.get("Location") == location


def test_lifecycle_settings_are_checked_and_the_secret_is_masked() -> None:
    from stream_app.settings import Settings, SettingsError

    env = {"ENGAGEMENT_SUPPRESSION_SECRET": "s3cret", "ENGAGEMENT_ADMIN_TOKENS": "a, b"}
    settings = Settings.from_env(env)
    assert settings.admin_token_list == ["a", "b"]
    redacted = settings.redacted()
    assert redacted["suppression_secret"] == "***" and redacted["admin_tokens"] == "***"
    for name, value in (("SUPPRESSION_DAYS", "0"), ("ALIAS_DAYS", "-1"), ("ALIAS_DAYS", "1e9")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({f"ENGAGEMENT_{name}": value})

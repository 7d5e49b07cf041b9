"""``docs/asyncapi.yaml``: valid AsyncAPI 3, references resolve, the topics and operations
are what the worker uses."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema

from stream_app.settings import PREFIX
from tests.deploy.specs import (
    DATA,
    DEFAULTS,
    DOCS,
    SETTING_NAMES,
    pointer,
    refs,
    schema_file,
    validators,
)

# --------------------------------------------------------------------------- AsyncAPI


def test_asyncapi_validates_against_the_asyncapi_3_schema(asyncapi: dict[str, Any]) -> None:
    schema = json.loads((DATA / "asyncapi-3.0.0.schema.json").read_text("utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(asyncapi)]
    assert not errors
    broken = copy.deepcopy(asyncapi)
    broken["operations"]["publishDeadLetters"]["action"] = "publish"  # AsyncAPI 2 wording
    assert list(validator.iter_errors(broken))
    assert str(asyncapi["asyncapi"]).startswith("3.")


def test_asyncapi_references_resolve(asyncapi: dict[str, Any]) -> None:
    for ref in refs(asyncapi):
        if ref.startswith("#/"):
            pointer(asyncapi, ref)
        else:
            assert (DOCS / ref).resolve().is_file(), ref


def test_asyncapi_names_the_topics_the_worker_uses(asyncapi: dict[str, Any]) -> None:
    addresses = {}
    for channel in asyncapi["channels"].values():
        setting = channel["x-setting"]
        assert setting in SETTING_NAMES
        default = getattr(DEFAULTS, setting.removeprefix(PREFIX).lower())
        assert channel["address"] == default
        addresses[setting] = channel["address"]
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == DEFAULTS.partitions
        assert kafka["replicas"] == DEFAULTS.topic_replication_factor
        assert kafka["topicConfiguration"]["retention.ms"] == DEFAULTS.topic_retention_ms
    assert {
        addresses["ENGAGEMENT_INPUT_TOPIC"],
        addresses["ENGAGEMENT_OUTPUT_TOPIC"],
        addresses["ENGAGEMENT_DLQ_TOPIC"],
    } == {"engagement.interactions", "engagement.segment-changes", "engagement.interactions.dlq"}


def test_asyncapi_operations_match_what_the_worker_does(asyncapi: dict[str, Any]) -> None:
    actions: dict[str, set[str]] = {}
    for op in asyncapi["operations"].values():
        address = pointer(asyncapi, op["channel"]["$ref"])["address"]
        actions.setdefault(address, set()).add(op["action"])
    assert actions == {
        DEFAULTS.input_topic: {"receive"},
        DEFAULTS.by_customer_topic: {"receive", "send"},
        DEFAULTS.output_topic: {"send"},
        DEFAULTS.dlq_topic: {"send"},
    }


def test_asyncapi_messages_document_keys_and_payloads(asyncapi: dict[str, Any]) -> None:
    messages = asyncapi["components"]["messages"]
    assert set(messages) == {
        "InteractionEvent", "LifecycleRequest", "Handover", "SegmentChange", "CustomerLifecycle",
        "DeadLetter",
    }  # fmt: skip
    for name, msg in messages.items():
        key = msg["bindings"]["kafka"]["key"]
        assert len(key["description"]) > 20, name
        # the schema files declare JSON Schema 2020-12 ($schema): the document says the same
        assert msg["payload"]["schemaFormat"] == "application/schema+json;version=2020-12"
        declared = json.loads(schema_file(msg).read_text("utf-8"))["$schema"]
        assert declared == "https://json-schema.org/draft/2020-12/schema"
        assert schema_file(msg).is_file()
        checks = validators(schema_file(msg))
        for example in msg["examples"]:
            for v in checks:
                v.validate(example["payload"])

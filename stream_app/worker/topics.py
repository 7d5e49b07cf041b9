"""The topics the worker reads and writes (names from settings)."""

from __future__ import annotations

from stream_app.app import app, settings

#: Interaction events as producers send them (keyed by customer or not).
interactions = app.topic(settings.input_topic, key_type=bytes, value_type=bytes)

#: Interaction events re-keyed by customer (internal; same partition count as the input).
by_customer = app.topic(settings.by_customer_topic, key_type=bytes, value_type=bytes)

#: What the agent consumes: both, co-partitioned, so a customer's events meet in one worker.
sources = app.topic(
    settings.input_topic, settings.by_customer_topic, key_type=bytes, value_type=bytes
)

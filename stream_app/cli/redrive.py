"""``engagement-scorer redrive``: dead letters back to the input topic, once the cause is fixed.

Reads the dead-letter topic from its beginning (up to where it goes quiet), keeps the
dead letters asked for (``--reason``, ``--since``), and produces each one's original
message to the input topic, keyed by its customer id, with an ``engagement-redrive``
header naming the dead letter. The worker then scores it as any other message: if the
cause is gone it is applied, otherwise it is dead-lettered again.

**Idempotent.** The dedup key of a dead letter is its original event's ``event_id``
(from the dead letter, else from its payload); a payload that names none is keyed by its
SHA-256. A key is marked in Redis (``redriven:{<key>}``, kept for the topics' retention)
once its message is acknowledged by the broker, and a marked key is never re-driven:
running the command twice, or on a topic holding the same dead letter twice, produces each
event once. (Should the command die between the broker's acknowledgement and the mark, the
next run produces that event again; the worker drops it as a duplicate by its
``event_id``.) ``--force`` ignores the marks.

A dead letter whose payload was cut to fit the broker's limit is re-driven from its source
message (topic, partition, offset), as long as that is still retained.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.errors import StreamAppError
from stream_app.kafka.auth import aiokafka_config
from stream_app.kafka.io import AiokafkaPublisher, consume
from stream_app.messages import OutMessage
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.state import RedisClient

HEADER = "engagement-redrive"
#: Messages produced (and acknowledged) before their marks are written.
CHUNK = 500
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RedriveError(StreamAppError):
    """A redrive argument cannot be used."""


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: an RFC 3339 time, a date, or a duration back from now (``90m``, ``2d``).

    >>> now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    >>> parse_since("2h", now).isoformat(), parse_since("2026-12-01", now).isoformat()
    ('2026-12-06T10:00:00+00:00', '2026-12-01T00:00:00+00:00')
    """
    m = _DURATION.match(text.strip())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RedriveError(
            f"--since: {text!r} is neither a time (2026-12-01T10:00:00Z), a date nor a "
            "duration (30m, 2h, 7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass
class Report:
    """What a run did."""

    read: int = 0
    redriven: Counter[str] = field(default_factory=Counter)  # by reason
    filtered: int = 0  # not asked for (--reason, --since)
    already: int = 0  # marked as re-driven before (or twice in the topic)
    unreadable: int = 0  # not a dead letter this worker writes
    gone: int = 0  # payload cut, and its source message no longer retained

    def line(self) -> str:
        by = ", ".join(f"{r}={n}" for r, n in sorted(self.redriven.items())) or "none"
        return (
            f"re-drove {sum(self.redriven.values())} ({by}); read {self.read} dead letters: "
            f"{self.filtered} not asked for, {self.already} re-driven before, "
            f"{self.unreadable} unreadable, {self.gone} whose source is no longer retained"
        )


def dedup_key(body: dict[str, Any], payload: bytes) -> str:
    """The event id a dead letter stands for, else ``sha256:<hex of the payload>``.

    >>> dedup_key({"event_id": "e1"}, b"")
    'e1'
    >>> dedup_key({}, b'{"event_id": "e2", "x": 1}')
    'e2'
    >>> dedup_key({}, b"not json")[:7]
    'sha256:'
    """
    eid = body.get("event_id")
    if isinstance(eid, str) and eid:
        return eid
    doc = _json(payload)
    eid = doc.get("event_id") if isinstance(doc, dict) else None
    if isinstance(eid, str) and eid:
        return eid
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def message_key(body: dict[str, Any], payload: bytes, dlq_key: bytes | None) -> bytes | None:
    """The input key: the customer id (so the worker needs no forward), else the original."""
    cid = body.get("customer_id")
    if not isinstance(cid, str):
        doc = _json(payload)
        cid = doc.get("customer_id") if isinstance(doc, dict) else None
    if isinstance(cid, str) and cid:
        return cid.encode()
    if dlq_key is not None:
        return dlq_key
    if "key_b64" in body and body.get("key_size") == len(base64.b64decode(body["key_b64"])):
        return base64.b64decode(body["key_b64"])
    return None


async def fetch(
    brokers: str, topic: str, partition: int, offset: int, config: dict[str, Any]
) -> bytes | None:
    """The value of one message (None if it is no longer there), read by offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=brokers, enable_auto_commit=False, group_id=None,
        auto_offset_reset="none", max_partition_fetch_bytes=64 * 1024 * 1024, **config,
    )  # fmt: skip
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        for _ in range(20):
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
            for m in batch.get(tp, []):
                return m.value if m.offset == offset else None
        return None
    except Exception:  # noqa: BLE001 - out of range, gone: the caller counts it
        return None
    finally:
        await consumer.stop()


async def redrive(
    settings: Settings,
    client: RedisClient,
    keys: Keys,
    *,
    reasons: Sequence[str] = (),
    since: datetime | None = None,
    dry_run: bool = False,
    force: bool = False,
    idle_timeout_s: float = 5.0,
) -> Report:
    """Re-drive the dead letters asked for (see the module); what was done."""
    report = Report()
    config = aiokafka_config(settings)
    brokers = ",".join(settings.broker_list)
    ttl_ms = settings.topic_retention_ms
    seen: set[str] = set()
    pending: list[tuple[OutMessage, str]] = []

    async def flush() -> None:  # acknowledged by the broker first, then marked
        if not pending:
            return
        await pub.publish([out for out, _ in pending])
        marks = client.pipeline(transaction=False)
        for out, mark in pending:
            marks.set(mark, dict(out.headers)[HEADER], px=ttl_ms)
        await marks.execute()
        pending.clear()

    async with AiokafkaPublisher(brokers, **config) as pub:
        async for key, value, partition, offset in consume(
            brokers, settings.dlq_topic, idle_timeout_s=idle_timeout_s, client_config=config
        ):
            report.read += 1
            body = _json(value)
            if not isinstance(body, dict) or "reason" not in body or "source" not in body:
                report.unreadable += 1
                continue
            if (reasons and body["reason"] not in reasons) or (
                since is not None and _received(body) < since
            ):
                report.filtered += 1
                continue
            payload = base64.b64decode(body.get("payload_b64", ""))
            if body.get("payload_truncated"):
                src = body["source"]
                whole = await fetch(brokers, src["topic"], src["partition"], src["offset"], config)
                if whole is None:
                    report.gone += 1
                    continue
                payload = whole
            dedup = dedup_key(body, payload)
            mark = keys.redriven(dedup)
            if dedup in seen or (not force and await client.exists(mark)):
                report.already += 1
                continue
            seen.add(dedup)
            report.redriven[body["reason"]] += 1
            if dry_run:
                continue
            origin = f"{settings.dlq_topic}:{partition}:{offset}".encode()
            out = OutMessage(
                settings.input_topic, message_key(body, payload, key), payload, ((HEADER, origin),)
            )
            pending.append((out, mark))
            if len(pending) >= CHUNK:
                await flush()
        await flush()
    return report


def _received(body: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(body.get("received_at", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)

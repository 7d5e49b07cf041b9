"""Trigger a campaign from segment changes: POST each matching CloudEvent to a webhook.

A small consumer of the engagement scorer's output topic (``engagement.segment-changes``).
For every change it is told to watch (by default: a customer *entering* the ``lapsing``
segment, for a win-back campaign) it POSTs the CloudEvent to a webhook, in the CloudEvents
HTTP structured mode (``Content-Type: application/cloudevents+json``), with the event's id
as ``Idempotency-Key``.

* **At least once.** It reads in a consumer group and commits a message's offset only once
  the webhook has accepted every matching change up to it, so a crash or a restart resends
  at most what was in flight.
* **Retries.** A connection error, a timeout, 408, 429 or 5xx is retried with exponential
  backoff (doubling from ``--backoff``, capped at ``--max-backoff``) until it goes through:
  nothing is skipped because the webhook is down. Any other 4xx is a permanent refusal: it
  is logged and skipped.
* **Deduplication on the CloudEvent id.** The scorer republishes a change with the same id
  (at-least-once delivery upstream). Ids already delivered are remembered (the last
  ``--remember`` of them, and, with ``--seen-file``, across restarts) and not sent again.

Needs ``aiokafka`` (a dependency of engagement-scorer) and the standard library::

    python examples/campaign_webhook.py --brokers 127.0.0.1:9092 \\
        --webhook https://campaigns.example/hooks/win-back --segment lapsing \\
        --seen-file /var/lib/win-back/seen.txt
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger("campaign_webhook")

#: Statuses worth trying again: the webhook is busy or broken, not refusing the event.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class Config:
    """What to read, what to watch for, where to send it."""

    brokers: str
    webhook: str
    topic: str = "engagement.segment-changes"
    group: str = "campaign-webhook"
    segments: frozenset[str] = frozenset({"lapsing"})
    types: frozenset[str] = frozenset({"engagement.segment.entered"})
    seen_file: Path | None = None
    remember: int = 100_000
    timeout_s: float = 10.0
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    session_timeout_ms: int = 10_000
    headers: dict[str, str] = field(default_factory=dict)


class Rejected(Exception):
    """The webhook refused the event for good (a 4xx other than 408/425/429)."""


class Seen:
    """The ids already delivered: the last ``limit`` in memory, appended to ``path``."""

    def __init__(self, limit: int, path: Path | None = None) -> None:
        self.limit = limit
        self.path = path
        self.ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        if path is not None and path.exists():
            for line in path.read_text("utf-8").splitlines()[-limit:]:
                if line:
                    self.ids[line] = None

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.ids

    def add(self, event_id: str) -> None:
        self.ids[event_id] = None
        if len(self.ids) > self.limit:
            self.ids.popitem(last=False)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as fp:
                fp.write(event_id + "\n")


def wanted(event: Any, config: Config) -> bool:
    """True for a CloudEvent of a watched type and segment (tier changes: the tier entered)."""
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        return False
    return event.get("type") in config.types and event["data"].get("segment") in config.segments


def post(url: str, event: dict[str, Any], timeout_s: float, headers: dict[str, str]) -> int:
    """POST one CloudEvent (structured mode); the status, or :class:`Rejected`/``OSError``."""
    request = urllib.request.Request(
        url,
        data=json.dumps(event).encode(),
        method="POST",
        headers={
            "Content-Type": "application/cloudevents+json; charset=utf-8",
            "Idempotency-Key": str(event["id"]),
            **headers,
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout_s) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code in RETRY_STATUSES:
                raise OSError(f"HTTP {exc.code}") from None
            raise Rejected(f"HTTP {exc.code}: {exc.read()[:200]!r}") from None


async def deliver(event: dict[str, Any], config: Config) -> bool:
    """Send one event until the webhook accepts it (True) or refuses it for good (False)."""
    delay = config.backoff_s
    attempt = 1
    while True:
        try:
            await asyncio.to_thread(post, config.webhook, event, config.timeout_s, config.headers)
            return True
        except Rejected as exc:
            log.error("webhook refused %s (%s): skipped", event["id"], exc)
            return False
        except OSError as exc:  # connection refused, timeout, 5xx...: try again later
            log.warning("attempt %d for %s failed (%s); retrying in %.1f s",
                        attempt, event["id"], exc, delay)  # fmt: skip
        await asyncio.sleep(delay)  # back off before the next attempt
        delay = min(delay * 2, config.max_backoff_s)
        attempt += 1


async def handle(value: bytes, config: Config, seen: Seen) -> str:
    """One message: ``sent``, ``duplicate``, ``refused``, ``ignored`` or ``unreadable``."""
    try:
        event = json.loads(value)
    except ValueError:
        return "unreadable"
    if not wanted(event, config):
        return "ignored"
    if event["id"] in seen:
        return "duplicate"
    delivered = await deliver(event, config)
    seen.add(event["id"])  # (refused for good: not worth sending again either)
    return "sent" if delivered else "refused"


async def run(
    config: Config,
    *,
    idle_timeout_s: float | None = None,
    until: Callable[[collections.Counter[str]], bool] | None = None,
) -> collections.Counter[str]:
    """Consume until stopped, ``idle_timeout_s`` without a message, or ``until(outcomes)``
    holds after a batch; returns how many messages had each outcome (see :func:`handle`)."""
    seen = Seen(config.remember, config.seen_file)
    outcomes: collections.Counter[str] = collections.Counter()
    consumer = AIOKafkaConsumer(
        config.topic,
        bootstrap_servers=config.brokers,
        group_id=config.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=config.session_timeout_ms,
        heartbeat_interval_ms=max(1000, config.session_timeout_ms // 3),
    )
    await consumer.start()
    try:
        while True:
            timeout_ms = int((idle_timeout_s or 1.0) * 1000)
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=100)
            if not batch and idle_timeout_s is not None:
                return outcomes
            for tp, messages in batch.items():
                for m in messages:
                    outcomes[await handle(m.value, config, seen)] += 1
                # every change of this batch is delivered: commit past it
                await consumer.commit(
                    {TopicPartition(tp.topic, tp.partition): messages[-1].offset + 1}
                )
            if until is not None and until(outcomes):
                return outcomes
    finally:
        await consumer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", required=True, help="Kafka bootstrap, host:port[,...]")
    parser.add_argument("--webhook", required=True, help="the URL to POST each change to")
    parser.add_argument("--topic", default=Config.topic)
    parser.add_argument("--group", default=Config.group, help="consumer group")
    parser.add_argument("--segment", action="append", help="segment (or tier) to watch")
    parser.add_argument(
        "--type", action="append", dest="types",
        choices=["engagement.segment.entered", "engagement.segment.exited",
                 "engagement.tier.changed"],
        help="CloudEvent types to watch (default: engagement.segment.entered)",
    )  # fmt: skip
    parser.add_argument("--seen-file", type=Path, help="remember delivered ids across restarts")
    parser.add_argument("--backoff", type=float, default=Config.backoff_s)
    parser.add_argument("--max-backoff", type=float, default=Config.max_backoff_s)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = Config(
        brokers=args.brokers,
        webhook=args.webhook,
        topic=args.topic,
        group=args.group,
        segments=frozenset(args.segment or Config.segments),
        types=frozenset(args.types or Config.types),
        seen_file=args.seen_file,
        backoff_s=args.backoff,
        max_backoff_s=args.max_backoff,
    )
    try:
        asyncio.run(run(config))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

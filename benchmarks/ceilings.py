"""The two ceilings ``benchmarks/run.py`` compares the worker with, one process each.

* ``aiokafka``: a plain aiokafka consumer (no group, every partition assigned, read from
  the beginning) that only parses each message with orjson: no framework, no Redis.
  The most this machine, this broker and Python can hand over per second.
* ``faust``: a faust worker built by ``stream_app.app.create_app`` from the same
  ``ENGAGEMENT_*`` environment as the real worker (same App settings, same fetch wait
  patch, uvloop), with the worker's input on the same source topics
  (``stream_app.worker.agents.register_input``: the batch input path, or faust's agent
  and stream, as ``ENGAGEMENT_FAUST_BATCH_INPUT`` says; same size and window) whose
  handler does nothing: the framework's own cost per message.

  ``benchmarks/run.py`` runs it twice: with the worker's faust settings, and once more
  with faust as it comes (``ENGAGEMENT_FAUST_BATCH_INPUT=false``,
  ``ENGAGEMENT_FAUST_EAGER_DELIVERY=false``, ``ENGAGEMENT_FAUST_MONITOR=true``), to show
  what those settings save.

Each one counts messages until ``--expect`` have arrived, then writes ``--result`` (JSON:
wall-clock time and count at the start -- the first batch for faust, the first fetch for
aiokafka -- and when the last one arrived) and keeps running until the caller stops it
(SIGTERM). Not meant to be run by hand::

    python benchmarks/ceilings.py aiokafka --bootstrap 127.0.0.1:9092 --topic t \
        --expect 200000 --result /tmp/a.json
    ENGAGEMENT_...=... python benchmarks/ceilings.py faust --expect 200000 --result /tmp/f.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class Progress:
    """Counts messages; writes the result file once ``expect`` were seen."""

    def __init__(self, expect: int, result: Path) -> None:
        self.expect = expect
        self.result = result
        self.count = 0
        self.first_t: float | None = None
        self.first_n = 0
        self.first_cpu = 0.0
        self.done = False

    def begin(self) -> None:
        """Count from now, not from the first batch (one fetch may bring the whole topic)."""
        self.first_t, self.first_n, self.first_cpu = time.time(), 0, _cpu_s()

    def add(self, n: int) -> None:
        if n <= 0 or self.done:
            return
        self.count += n
        now = time.time()
        if self.first_t is None:
            self.first_t, self.first_n, self.first_cpu = now, n, _cpu_s()
        if self.count >= self.expect:
            self.done = True
            doc = {
                "first_t": self.first_t,
                "first_n": self.first_n,
                "last_t": now,
                "count": self.count,
                "cpu_s": _cpu_s() - self.first_cpu,  # this process, all its threads
                "pid": os.getpid(),
            }
            tmp = self.result.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(self.result)  # the caller never reads half a file


async def plain_aiokafka(args: argparse.Namespace) -> None:
    """Read the topic from the beginning with getmany(), orjson.loads every value."""
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    progress = Progress(args.expect, args.result)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=args.fetch_wait_ms,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(args.topic) or set()
        consumer.assign([TopicPartition(args.topic, p) for p in sorted(parts)])
        await consumer.seek_to_beginning()
        loads = orjson.loads
        progress.begin()  # the consumer is started and assigned: fetching starts now
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            n = 0
            for messages in batches.values():
                for m in messages:
                    loads(m.value)
                n += len(messages)
            progress.add(n)
    finally:
        await consumer.stop()


def run_aiokafka(args: argparse.Namespace) -> int:
    import uvloop

    uvloop.run(plain_aiokafka(args))
    return 0


def run_faust(args: argparse.Namespace) -> int:
    """A faust worker with the real App and one do-nothing agent (started as the CLI does)."""
    from stream_app.kafka.topics import prepare
    from stream_app.settings import Settings

    settings = Settings.from_env()
    partitions = asyncio.run(prepare(settings))  # as ``engagement-scorer worker`` does
    import mode.loop

    mode.loop.use("uvloop")
    from faust import Worker

    from stream_app.app import create_app
    from stream_app.worker.agents import register_input
    from stream_app.worker.services import worker_topics

    app = create_app(settings)
    progress = Progress(args.expect, args.result)

    async def nothing(records: Any) -> None:
        progress.add(len(records))

    register_input(app, settings, worker_topics(settings, partitions), nothing)
    Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("aiokafka", help="plain aiokafka consumer + orjson.loads")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--fetch-wait-ms", type=int, default=100)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--result", type=Path, required=True)
    p.set_defaults(func=run_aiokafka)
    p = sub.add_parser("faust", help="faust agent that only acks (configured by ENGAGEMENT_*)")
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--result", type=Path, required=True)
    p.set_defaults(func=run_faust)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

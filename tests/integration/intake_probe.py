"""A faust worker with the worker's batch input path and a handler that only writes down
what it was given (``tests/integration/test_batch_input.py`` runs it as a process).

Configured by the worker's ``ENGAGEMENT_*`` variables (topics, group, batch size and
window) and by arguments: ``--log`` (JSON lines: ``begin`` and ``done`` of each batch
with its (topic, partition, offset) triples, ``assigned`` partitions, ``inbox`` sizes),
``--gate`` and ``--hold-after N``: batches after the N-th wait while the gate file
exists, so a test can kill the process mid-batch or fill its inbox.

    python -m tests.integration.intake_probe --log probe.jsonl --gate gate --hold-after 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from stream_app.messages import Record

#: How often the probe writes down its inbox's size.
SAMPLE_S = 0.05


class Journal:
    """The probe's log: one JSON object per line, flushed at once (a kill -9 keeps it)."""

    def __init__(self, path: Path) -> None:
        self.file: TextIO = path.open("a", encoding="utf-8")

    def write(self, **doc: Any) -> None:
        self.file.write(json.dumps({"pid": os.getpid(), **doc}) + "\n")
        self.file.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--gate", type=Path, required=True)
    parser.add_argument("--hold-after", type=int, default=-1, help="-1: never hold")
    args = parser.parse_args(argv)

    from stream_app.kafka.topics import prepare
    from stream_app.settings import Settings

    settings = Settings.from_env()
    partitions = asyncio.run(prepare(settings))
    from faust import Worker

    from stream_app.app import create_app
    from stream_app.faustx.intake import BatchInput
    from stream_app.worker.agents import source_topics
    from stream_app.worker.services import worker_topics

    journal = Journal(args.log)
    app = create_app(settings)
    intake = BatchInput.register(
        app,
        source_topics(app, worker_topics(settings, partitions)),
        settings.batch_size,
        settings.batch_window_ms / 1000.0,
    )
    handled = [0]

    async def handle(records: Sequence[Record]) -> None:
        handled[0] += 1
        batch = [[r.topic, r.partition, r.offset] for r in records]
        journal.write(begin=batch)
        while args.hold_after >= 0 and handled[0] > args.hold_after and args.gate.exists():
            await asyncio.sleep(0.02)  # (a test holds the batch here)
        journal.write(done=batch)

    @app.task  # type: ignore[untyped-decorator]
    async def score() -> None:
        await intake.run(handle)

    @app.timer(interval=SAMPLE_S)  # type: ignore[untyped-decorator]
    async def sample() -> None:
        journal.write(inbox=len(intake.inbox))

    @app.on_partitions_assigned.connect  # type: ignore[untyped-decorator]
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        journal.write(assigned=sorted([tp.topic, tp.partition] for tp in assigned))

    Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())

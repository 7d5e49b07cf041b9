"""End-to-end benchmark of the stream worker, side by side with its ceilings (issue 8).

One command (``make bench``) starts a throw-away Tansu broker and redis-server, produces a
seeded workload, then measures in one run and prints a table (written as JSON too):

1. worker throughput: one ``engagement-scorer worker`` process, first to last event, with
   the CPU of worker, broker and Redis over the same window;
2. the ceilings on the same data: a plain aiokafka + orjson consumer, and a faust agent on
   the same App settings that only acks the worker's batches (``stream_app.faustx.take.batches``,
   ``benchmarks/ceilings.py``);
3. a Quix Streams peer doing the worker's job on the same data (``benchmarks/quix_peer.py``,
   the ``bench`` extra);
4. scale-out: two workers in one consumer group;
5. latency: steady traffic, production of an event -> its segment change on the output topic;
6. Redis memory per customer (INFO ``used_memory`` delta and ``MEMORY USAGE`` samples),
   with and without the explanation;
and the startup time of each worker (launch -> first event processed); then the verdict on
each target (the JSON's ``verdicts``). ``--profile`` adds a py-spy profile of one more
worker pass (needs ``pip install py-spy``).

    .venv/bin/python benchmarks/run.py                       # the issue's defaults
    .venv/bin/python benchmarks/run.py --quick               # 50,000 events, 10 s latency

Every process it starts is stopped by pid when it ends, fails or is interrupted. The
figures mean something only on an otherwise idle machine: the table shows how busy the
machine was (CPU of processes not started here) during each measurement.
See docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The repository first on the path, as for every process the benchmark starts (they run in
# it): a scoring core compiled in place (docs/performance.md) loads with its shared module.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from e2e.cli import main

if __name__ == "__main__":
    sys.exit(main())

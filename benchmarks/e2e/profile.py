"""The profiled pass: py-spy on one more worker, its samples by category and call site."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e2e.bench import Bench, Launched
from e2e.config import REPO
from e2e.memory import flush
from e2e.workers import worker_pass


def py_spy_path() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


#: Where a CPU sample of the worker goes: the first category one of whose path prefixes
#: (or function names) matches the innermost frame that is not generic plumbing.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("parse (orjson + validation)", ("scoring/events.py",)),
    ("scoring (pure: apply, state codec, crossings, explain)", ("scoring/",)),
    (
        "Redis (redis-py + store code)",
        ("redis/", "stream_app/store/state.py", "stream_app/store/readstore.py"),
    ),
    (
        "publish (CloudEvents + producer)",
        (
            "aiokafka/producer/",
            "faust/transport/producer.py",
            "stream_app/contracts.py",
            "stream_app/jsonutil.py",
            "FaustPublisher.publish",
        ),
    ),
    (
        "web (/metrics scrape)",
        (
            "aiohttp/",
            "yarl/",
            "multidict/",
            "stream_app/http/health.py",
            "stream_app/http/views.py",
            "stream_app/worker/metrics.py",
        ),
    ),
    (  # (stream_app/faustx/take.py is faust's take buffer, reworked: before the glue)
        "faust + mode (stream, take, acks, sensors)",
        ("faust/", "mode/", "aiokafka/consumer/", "stream_app/faustx/take.py"),
    ),
    ("pipeline glue (stream_app)", ("stream_app/", "aiokafka/partitioner.py")),
)
#: Plumbing a sample is passed through to its caller: the event loop, stdlib helpers, the
#: entry points, the Kafka connection layer (it serves the producer and the consumer).
_GENERIC = (
    "asyncio/", "uvloop/", "threading.py", "selectors.py", "logging/", "<frozen", "<string>",
    "runpy.py", "contextlib.py", "weakref.py", "_weakrefset.py", "dataclasses.py", "typing.py",
    "functools.py", "stream_app/cli/main.py", "stream_app/cli/commands.py",
    "stream_app/cli/start.py", "mode/worker.py",
    "mode/threads.py", "aiokafka/conn.py", "aiokafka/client.py", "aiokafka/util.py",
    "aiokafka/protocol/",
)  # fmt: skip
_LOOP = "event loop (uvloop C code: sockets, callbacks)"
_THREAD = "consumer thread (aiokafka fetch, its own loop)"


def _frame(frame: str) -> tuple[str, str]:
    """``func (path:line)`` -> (func, path relative to site-packages, stdlib or the repo)."""
    func, _, rest = frame.rpartition(" (")
    path = rest.rsplit(":", 1)[0]
    for marker in ("/site-packages/", "/lib/python3.", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                path = path.split("/", 1)[-1]
    return func, path


def categorize(frames: Sequence[str], thread: str) -> str:
    """The category of one sample (frames root first)."""
    if thread != "MainThread":
        return _THREAD
    for frame in reversed(frames):
        func, path = _frame(frame)
        if path.startswith(_GENERIC):
            continue
        for name, prefixes in CATEGORIES:
            if path.startswith(prefixes) or func in prefixes:
                return name
        return "other"
    return _LOOP


#: Call sites of the worker's own code, to split the categories further: a sample goes to
#: the innermost of these functions on its stack (inclusive time).
LANDMARKS = (
    "parse_event", "apply", "next_crossing", "decode_state", "encode_state", "explain_add",
    "decode_explanation", "encode_explanation", "StateStore.load", "StateStore.commit",
    "ReadStore.commands", "FaustPublisher.publish",
    "cloudevent", "expected_partition", "BatchProcessor.process", "Runtime.handle",
    "Stream.ack", "Consumer._drain_messages", "Stream.noack_take", "batches", "MetricsView.get",
)  # fmt: skip


def _landmark(frames: Sequence[str], thread: str) -> str:
    if thread != "MainThread":
        return "(consumer thread)"
    for frame in reversed(frames):
        func = frame.rpartition(" (")[0]
        if func in LANDMARKS:
            return func
    return "(elsewhere: event loop, faust internals)"


def summarize_profile(raw: Path) -> dict[str, Any]:
    """Share of CPU samples per category, per call site, and the top functions by own time."""
    by_cat: Counter[str] = Counter()
    by_site: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        head, *frames = stack.split(";")
        thread = head.split(": ", 1)[-1].split(" ", 1)[0]
        by_thread[thread] += count
        by_cat[categorize(frames, thread)] += count
        by_site[_landmark(frames, thread)] += count
        if frames:
            by_leaf[frames[-1]] += count
        total += count
    share = {k: v / total for k, v in by_cat.most_common()} if total else {}
    return {
        "samples": total,
        "share_by_category": share,
        "share_by_thread": {k: v / total for k, v in by_thread.most_common()} if total else {},
        "share_by_call_site": {k: v / total for k, v in by_site.most_common()} if total else {},
        "top_leaf_functions": [(k, v / total) for k, v in by_leaf.most_common(15)],
    }


async def profile_pass(bench: Bench) -> dict[str, Any]:
    """One more worker pass with py-spy attached from its first event to its last."""
    spy = py_spy_path()
    if spy is None:
        return {"skipped": "py-spy not installed (.venv/bin/pip install py-spy)"}
    svg = bench.cfg.out.with_suffix(".profile.svg")
    raw = bench.cfg.out.with_suffix(".profile.txt")
    svg.parent.mkdir(parents=True, exist_ok=True)
    spies: list[subprocess.Popen[bytes]] = []

    async def attach(workers: list[Launched]) -> None:
        pid = str(workers[0].proc.pid)
        common = [spy, "record", "--pid", pid, "--rate", "100", "--nonblocking"]
        env = dict(os.environ)
        for fmt, path in (("flamegraph", svg), ("raw", raw)):
            argv = [
                *common,
                "--format",
                fmt,
                "-o",
                str(path),
                *(["--threads"] if fmt == "raw" else []),
            ]
            spies.append(bench.procs.spawn(f"py-spy-{fmt}", argv, env, bench.log(f"py-spy-{fmt}")))

    async def detach(workers: list[Launched]) -> None:
        for proc in spies:  # SIGINT: py-spy writes its output and exits
            bench.procs.stop(proc, sig=signal.SIGINT, wait=30.0)

    await flush(bench)
    try:
        result = await worker_pass(bench, "profiled", 1, on_first=attach, after=detach)
    finally:
        for proc in spies:
            bench.procs.stop(proc, sig=signal.SIGINT, wait=30.0)
    result["flamegraph"] = str(svg)
    result["raw"] = str(raw)
    if raw.exists():
        result["summary"] = summarize_profile(raw)
    return result

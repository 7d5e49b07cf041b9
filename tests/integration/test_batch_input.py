"""The batch input path against a real broker, with probe workers
(``tests/integration/intake_probe.py``) that write down every batch they begin and finish.

- A worker killed with SIGKILL in the middle of a batch has committed only offsets below
  which it finished everything; its successor reads from there, so the interrupted batch
  is read again, and nothing is lost or read twice by the successor.
- A worker whose inbox is full (its batch held) stops taking fetches in; when a second
  worker joins, the first one scores no record of a partition it lost after the
  rebalance (its inbox was dropped, the new owner reads them), and in the end every
  record is done and every offset committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.devkit.stack import LocalService
from stream_app.kafka.topics import TopicSpec, ensure_topics
from tests.integration.workers import clean_env, finish, terminate
from tests.support.kafka import Out, produce

ROOT = Path(__file__).resolve().parents[2]
Triple = tuple[str, int, int]


class Probe:
    """One probe worker process and its journal."""

    def __init__(self, env: dict[str, str], log: Path, gate: Path, hold_after: int) -> None:
        self.log = log
        argv = [sys.executable, "-m", "tests.integration.intake_probe", "--log", str(log)]
        argv += ["--gate", str(gate), "--hold-after", str(hold_after)]
        self.stderr = log.with_suffix(".err")
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=err, stderr=err)

    def entries(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def triples(self, kind: str) -> list[Triple]:
        return [tuple(t) for e in self.entries() if kind in e for t in e[kind]]  # type: ignore[misc]

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture
def probes(tmp_path: Path) -> Iterator[list[Probe]]:
    started: list[Probe] = []
    try:
        yield started
    finally:
        for p in started:
            if p.alive():
                terminate(p.process)
                if not finish(p.process, 20):
                    p.process.kill()
                    p.process.wait()


def env_for(
    tansu: LocalService, tmp: Path, unique_name: Callable[[str], str], **extra: str
) -> dict[str, str]:
    env = clean_env()
    env.update(
        {
            "ENGAGEMENT_KAFKA_BROKERS": tansu.url,
            "ENGAGEMENT_INPUT_TOPIC": unique_name("in"),
            "ENGAGEMENT_OUTPUT_TOPIC": unique_name("out"),
            "ENGAGEMENT_DLQ_TOPIC": unique_name("dlq"),
            "ENGAGEMENT_APP_ID": unique_name("app"),
            "ENGAGEMENT_WEB_ENABLED": "false",
            "ENGAGEMENT_DATA_DIR": str(tmp / "faust"),
            "ENGAGEMENT_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def feed(
    tansu: LocalService, env: dict[str, str], partitions: int, per_partition: int
) -> set[Triple]:
    """``per_partition`` messages on every input partition; their triples."""
    topic = env["ENGAGEMENT_INPUT_TOPIC"]
    asyncio.run(ensure_topics(tansu.url, [TopicSpec(topic, partitions)]))
    outs = [
        Out(b'{"n":%d}' % i, partition=p) for i in range(per_partition) for p in range(partitions)
    ]
    sent = asyncio.run(produce(tansu.url, topic, outs))
    return {(topic, s.partition, s.offset) for s in sent}


def committed(tansu: LocalService, env: dict[str, str], partitions: int) -> dict[int, int]:
    """The group's committed offset of each input partition (0: none)."""

    async def read() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=tansu.url, group_id=env["ENGAGEMENT_APP_ID"])
        await consumer.start()
        try:
            topic = env["ENGAGEMENT_INPUT_TOPIC"]
            got = {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
        finally:
            await consumer.stop()
        return {p: int(o or 0) for p, o in got.items()}

    return asyncio.run(read())


def below(marks: dict[int, int], topic: str) -> set[Triple]:
    return {(topic, p, o) for p, mark in marks.items() for o in range(mark)}


def test_a_kill_9_mid_batch_commits_only_what_was_done_and_the_successor_reads_the_rest(
    tansu: LocalService,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    probes: list[Probe],
    wait_until: Callable[..., Any],
) -> None:
    env = env_for(
        tansu, tmp_path, unique_name, ENGAGEMENT_PARTITIONS="2", ENGAGEMENT_BATCH_SIZE="40"
    )
    topic = env["ENGAGEMENT_INPUT_TOPIC"]
    produced = feed(tansu, env, 2, 150)
    gate = tmp_path / "gate"
    gate.touch()
    first = Probe(env, tmp_path / "first.jsonl", gate, hold_after=3)
    probes.append(first)
    wait_until(
        lambda: len([e for e in first.entries() if "begin" in e]) >= 4,
        timeout=90,
        what="a held batch",
    )
    done_before = set(first.triples("done"))
    held = set(first.triples("begin")) - done_before
    wait_until(
        lambda: sum(committed(tansu, env, 2).values()) >= len(done_before),
        timeout=30,
        what="the commit of the finished batches",
    )
    os.kill(first.process.pid, signal.SIGKILL)  # in the middle of the held batch
    first.process.wait()
    marks = committed(tansu, env, 2)
    assert held, "the first worker was holding a batch when it was killed"
    assert below(marks, topic) <= set(first.triples("done"))  # acked only once done
    assert not held & below(marks, topic)  # the interrupted batch was not committed

    second = Probe(env, tmp_path / "second.jsonl", gate, hold_after=-1)
    probes.append(second)
    wait_until(
        lambda: set(second.triples("done")) | below(marks, topic) >= produced,
        timeout=90,
        what="the successor to finish the input",
    )
    redone = second.triples("done")
    assert len(redone) == len(set(redone))  # read once by the successor
    assert set(redone) == produced - below(marks, topic)  # from the committed offsets on
    assert held <= set(redone)  # the interrupted batch was read again
    wait_until(lambda: committed(tansu, env, 2) == {0: 150, 1: 150}, timeout=30, what="commits")


def test_a_full_inbox_holds_fetches_back_and_a_revoke_drops_it(
    tansu: LocalService,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    probes: list[Probe],
    wait_until: Callable[..., Any],
) -> None:
    env = env_for(
        tansu, tmp_path, unique_name, ENGAGEMENT_PARTITIONS="4", ENGAGEMENT_BATCH_SIZE="25"
    )
    topic = env["ENGAGEMENT_INPUT_TOPIC"]
    produced = feed(tansu, env, 4, 100)
    gate = tmp_path / "gate"
    gate.touch()
    first = Probe(env, tmp_path / "first.jsonl", gate, hold_after=1)
    probes.append(first)

    def inbox_sizes() -> list[int]:
        return [int(e["inbox"]) for e in first.entries() if "inbox" in e]

    wait_until(lambda: any(n >= 25 for n in inbox_sizes()), timeout=90, what="a full inbox")
    full = len(inbox_sizes())
    more = feed(tansu, env, 4, 100)  # while the batch is held, the fetcher must not go on
    wait_until(lambda: len(inbox_sizes()) >= full + 20, timeout=30, what="inbox samples")
    held_sizes = inbox_sizes()[full - 1 :]
    assert len(set(held_sizes)) == 1, f"the inbox grew while full: {held_sizes}"
    assert held_sizes[0] < 2 * 25  # a batch's worth, plus one fetch of at most a batch

    second = Probe(env, tmp_path / "second.jsonl", gate, hold_after=-1)
    probes.append(second)

    def reassigned() -> list[list[Any]] | None:
        assigned = [e["assigned"] for e in first.entries() if "assigned" in e]
        inputs = [[t, p] for t, p in (assigned[-1] if assigned else []) if t == topic]
        return inputs if len(assigned) >= 2 and len(inputs) < 4 else None

    kept = wait_until(reassigned, timeout=90, what="the first worker to lose partitions")
    gate.unlink()  # the held batch finishes
    everything = produced | more
    wait_until(
        lambda: set(first.triples("done")) | set(second.triples("done")) >= everything,
        timeout=90,
        what="every record done by one of the two",
    )
    ours = {p for _, p in kept}
    entries = first.entries()
    last_assigned = max(i for i, e in enumerate(entries) if "assigned" in e)
    begun_after = [
        tuple(t) for e in entries[last_assigned + 1 :] if "begin" in e for t in e["begin"]
    ]
    lost = [t for t in begun_after if t[0] == topic and t[1] not in ours]
    assert not lost, f"the first worker scored records of partitions it lost: {lost[:5]}"
    wait_until(
        lambda: committed(tansu, env, 4) == dict.fromkeys(range(4), 200), timeout=30, what="commits"
    )

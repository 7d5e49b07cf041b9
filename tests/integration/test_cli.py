"""``engagement-scorer`` from the command line: produce, score, tail, check-model, and the
one-line errors for an unreachable broker or Redis, a bad model file, bad arguments.

One worker (the shipped model) serves the module; each command runs as a subprocess with
the worker's environment (topics, Redis, key prefix).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from scoring import values_at
from scoring.model import default_model_path
from stream_app.contracts import rfc3339
from stream_app.devkit.stack import LocalService, free_port
from tests.integration.workers import (
    REPO,
    SCHEMAS,
    Worker,
    clean_env,
    dumps,
    event,
    now_ms,
    start_worker,
    stop_all,
    unique,
)
from tests.support.diff import close
from tests.support.fold import fold

pytestmark = pytest.mark.integration

#: The fields ``score`` documents (the issue's list); more may follow.
SCORE_FIELDS = {
    "customer_id",
    "score",
    "dimensions",
    "tier",
    "segments",
    "nps_category",
    "clock",
    "events_applied",
}


@pytest.fixture(scope="module")
def worker(
    tansu: LocalService, redis_server: LocalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    w = start_worker(tansu, redis_server, tmp_path_factory.mktemp("cli"), name="cli")
    try:
        w.wait_ready()
        yield w
    finally:
        unclean = stop_all([w])
    assert not unclean, "\n".join(unclean)


def cli(
    *args: str, env: dict[str, str], stdin: bytes | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``engagement-scorer ARGS`` (as ``python -m stream_app.cli``) to completion."""
    proc = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", *args],
        env=env,
        cwd=REPO,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """Exit status 2, nothing on stdout, one line on stderr: ``engagement-scorer CMD: error:``."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"engagement-scorer {command}: error: "), lines[0]
    assert proc.stdout == ""
    return lines[0]


def jsonl(docs: list[dict[str, Any]]) -> bytes:
    return b"".join(dumps(d) + b"\n" for d in docs)


def wait_scored(w: Worker, customer_id: str, events: int) -> None:
    def done() -> bool:
        state = w.state(customer_id)
        return state is not None and state.events_applied >= events

    w.wait(done, what=f"{customer_id} scored with {events} events")


def check_score(out: dict[str, Any], w: Worker, docs: list[dict[str, Any]]) -> None:
    """``score`` output against the offline fold of ``docs``."""
    cid = docs[0]["customer_id"]
    expected = fold((dumps(d) for d in docs), w.model)[cid].state
    assert expected is not None
    assert out.keys() >= SCORE_FIELDS, out.keys()
    at_clock = values_at(expected, w.model, expected.clock_ms)
    assert out["customer_id"] == cid
    assert close(out["score"], at_clock.score)
    assert out["dimensions"].keys() == at_clock.dimensions.keys()
    assert all(close(out["dimensions"][k], v) for k, v in at_clock.dimensions.items())
    assert out["tier"] == expected.tier_name(w.model)
    assert out["segments"] == sorted(expected.segment_names(w.model))
    assert out["nps_category"] == expected.nps_category
    assert out["clock"] == rfc3339(expected.clock_ms)
    assert out["events_applied"] == expected.events_applied == len(docs)


def test_produce_a_file_then_score(worker: Worker, tmp_path: Path) -> None:
    cid = unique("cli-a")
    t = now_ms() - 60_000
    docs = [
        event(unique("e"), cid, "webinar_attended", t),
        event(unique("e"), cid, "webinar_attended", t),
        event(unique("e"), cid, "review_submitted", t + 1000, rating=5),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(docs) + b"\n")  # a blank line is skipped
    proc = cli("produce", str(path), env=worker.env)
    assert proc.returncode == 0, proc.stderr
    assert f"produced 3 events to {worker.settings.input_topic}" in proc.stderr
    wait_scored(worker, cid, 3)

    proc = cli("score", cid, env=worker.env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    check_score(out, worker, docs)
    assert out["tier"] == "warm" and out["segments"] == [] and out["nps_category"] is None
    assert "now" not in out

    proc = cli("score", cid, "--now", env=worker.env)
    assert proc.returncode == 0, proc.stderr
    later = json.loads(proc.stdout)
    check_score(later, worker, docs)
    now = later["now"]
    assert now["at"] >= out["clock"]
    assert 0 < now["score"] < later["score"]  # a minute of decay, nothing added
    assert close(sum(now["dimensions"].values()), now["score"])


def test_produce_from_stdin_then_score(worker: Worker) -> None:
    cid = unique("cli-b")
    t = now_ms() - 30_000
    docs = [
        event(unique("e"), cid, "email_click", t),
        event(unique("e"), cid, "nps_response", t + 1, score=9),
    ]
    proc = cli("produce", "-", env=worker.env, stdin=jsonl(docs))
    assert proc.returncode == 0, proc.stderr
    assert "produced 2 events" in proc.stderr
    wait_scored(worker, cid, 2)
    # produced keyed by customer: both landed on the customer's partition
    record = worker.record(cid)
    assert record is not None
    assert len([k for k in record.marks if k[0] in "ir"]) == 1  # ("m": the model epoch)

    proc = cli("score", cid, env=worker.env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    check_score(out, worker, docs)
    assert out["nps_category"] == "promoter" and "advocate" in out["segments"]


def test_score_of_an_unknown_customer_exits_1(worker: Worker) -> None:
    cid = unique("nobody")
    proc = cli("score", cid, env=worker.env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert cid in proc.stderr and "unknown customer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tail_from_beginning_prints_cloudevents(worker: Worker) -> None:
    cid = unique("cli-t")
    t = now_ms() - 10_000
    docs = [event(unique("e"), cid, "webinar_attended", t) for _ in range(2)]  # cold -> warm
    docs.append(event(unique("e"), cid, "nps_response", t + 1, score=10))  # advocate
    sent = worker.produce_events(docs)
    worker.wait_processed({cid: sent[-1]})
    schema = json.loads((SCHEMAS / "segment-change.schema.json").read_text())

    # the output topic holds at least these two changes (and those of the other tests)
    proc = cli("tail", "--from-beginning", "--max", "2", env=worker.env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        jsonschema.validate(json.loads(line), schema)

    proc = cli("tail", "--from-beginning", "--idle-timeout", "3", env=worker.env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    changes = [json.loads(line) for line in proc.stdout.splitlines()]
    ours = [c for c in changes if c["subject"] == cid]
    assert [(c["type"], c["data"]["segment"]) for c in ours] == [
        ("engagement.tier.changed", "warm"),
        ("engagement.segment.entered", "advocate"),
    ]


def test_check_model_on_the_default_model(tmp_path: Path) -> None:
    proc = cli("check-model", str(default_model_path()), env=clean_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "model default v1: OK"
    summary = "\n".join(lines[1:])
    for text in ("dimensions:", "event types: 14", "tiers: cold>=0, warm>=20, hot>=60", "lapsing"):
        assert text in summary, summary


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda text: text.replace("points = 3 ", "pointz = 3 ", 1), "events.email_click.pointz"),
        (lambda text: text.replace("warm = 20", 'warm = "twenty"'), "tiers.warm"),
        (lambda text: text.replace("version = 1", "version = 0"), "model.version"),
        (lambda text: text.replace("[model]", "[model", 1), "invalid TOML"),
    ],
)
def test_check_model_on_a_bad_model(tmp_path: Path, edit: Any, named: str) -> None:
    text = default_model_path().read_text("utf-8")
    bad = edit(text)
    assert bad != text
    path = tmp_path / "bad.toml"
    path.write_text(bad, "utf-8")
    line = assert_one_line_error(cli("check-model", str(path), env=clean_env()), "check-model")
    assert named in line
    # the worker refuses the same file with the same message
    env = {**clean_env(), "ENGAGEMENT_MODEL_FILE": str(path)}
    assert named in assert_one_line_error(cli("score", "c-1", env=env), "score")


def test_check_model_on_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    line = assert_one_line_error(cli("check-model", str(missing), env=clean_env()), "check-model")
    assert str(missing) in line


def test_unreachable_broker_is_one_clear_line(worker: Worker, tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    env = {**worker.env, "ENGAGEMENT_KAFKA_BROKERS": f"127.0.0.1:{port}"}
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl([event("e1", "c-1", "web_visit", now_ms())]))
    for args in (("produce", str(path)), ("tail", "--max", "1"), ("simulate", "--events", "5")):
        line = assert_one_line_error(cli(*args, env=env, timeout=60), args[0])
        assert f"cannot reach Kafka at 127.0.0.1:{port}" in line


def test_unreachable_redis_is_one_clear_line(worker: Worker) -> None:
    port = free_port()
    env = {**worker.env, "ENGAGEMENT_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    line = assert_one_line_error(cli("score", "c-1", env=env, timeout=60), "score")
    assert "Redis unreachable" in line and str(port) in line


@pytest.mark.parametrize(
    ("args", "env_extra", "named"),
    [
        (("score",), {}, "customer_id"),
        (("tail", "--max", "0"), {}, "--max"),
        (("produce",), {}, "file"),
        (("score", "c-1"), {"ENGAGEMENT_PARTITIONS": "zero"}, "ENGAGEMENT_PARTITIONS"),
    ],
)
def test_bad_arguments_and_settings(
    args: tuple[str, ...], env_extra: dict[str, str], named: str
) -> None:
    proc = cli(*args, env={**clean_env(), **env_extra})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert named in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"engagement-scorer {args[0]}: error: ")

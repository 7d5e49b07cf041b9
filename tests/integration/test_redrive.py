"""``engagement-scorer redrive`` against a real worker, Tansu and redis-server: a customer whose
record is corrupt has its events dead-lettered; once an operator removes the record, the
dead letters are re-driven and scored, exactly once however often the command runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.devkit.stack import LocalService
from tests.integration.workers import (
    REPO,
    Message,
    Out,
    Worker,
    dumps,
    event,
    now_ms,
    start_worker,
    stop_all,
    unique,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(tansu: LocalService, redis_server: LocalService, tmp_path: Path) -> Iterator[Worker]:
    w = start_worker(tansu, redis_server, tmp_path, name="redrive")
    try:
        w.wait_ready()
        yield w
    finally:
        problems = stop_all([w])
        assert not problems, problems


def redrive(w: Worker, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "redrive", "--idle-timeout", "2", *args],
        env=w.env,
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.stderr.decode()


def test_redrive_after_the_cause_is_fixed_scores_each_event_once(worker: Worker) -> None:
    w = worker
    cid = unique("rd")
    w.redis.set(w.keys.state(cid), b"3.x i0=1 4 \xff\xfe\xfd\xfc")  # a record gone bad
    now = now_ms()
    docs = [event(unique("e"), cid, "webinar_attended", now - 3000 + i) for i in range(3)]
    junk = Out(b"{not json", b"junk")
    w.produce([Out(dumps(d), cid.encode()) for d in docs] + [junk])

    def dead() -> list[dict[str, object]]:
        return [m.json() for m in w.read_all(w.settings.dlq_topic)]

    letters = w.wait(lambda: len(d := dead()) == 4 and d, timeout=45, what="4 dead letters")
    corrupt = [d for d in letters if d["reason"] == "corrupt_state"]
    assert sorted(str(d["event_id"]) for d in corrupt) == sorted(d["event_id"] for d in docs)
    assert w.redis.get(w.keys.state(cid)) == b"3.x i0=1 4 \xff\xfe\xfd\xfc"  # left untouched

    # nothing fixed yet: a dry run counts, a real one would only dead-letter them again
    assert "re-drove 3 (corrupt_state=3)" in redrive(w, "--reason", "corrupt_state", "--dry-run")
    w.redis.delete(w.keys.state(cid))  # the operator acts
    out = redrive(w, "--reason", "corrupt_state")
    assert "re-drove 3 (corrupt_state=3)" in out and "1 not asked for" in out
    w.wait(lambda: (s := w.state(cid)) is not None and s.events_applied == 3, timeout=45,
           what="the re-driven events scored")  # fmt: skip

    again = redrive(w, "--reason", "corrupt_state")  # idempotent: marked by event id
    assert "re-drove 0 (none)" in again and "3 re-driven before" in again
    assert "re-drove 0" in redrive(w, "--since", "2099-01-01")  # nothing that recent

    def of_cid(messages: list[Message]) -> list[Message]:
        return [m for m in messages if m.key == cid.encode()]

    # (the input is read, not marked: the worker consumes it)
    inputs = of_cid(w.read(w.settings.input_topic, lambda ms: len(of_cid(ms)) >= 6, what="6"))
    assert len(inputs) == 3 + 3  # the originals and one re-driven copy each
    redriven = [m for m in inputs if dict(m.headers).get("engagement-redrive")]
    assert len(redriven) == 3
    state = w.state(cid)
    assert state is not None and state.events_applied == 3

"""Changing the scoring model by replay, across a rolling restart and kill -9, and back.

One deployment of two workers lives through, in order:

1. a rolling restart with a new model file: nothing changes (the model in force stays);
2. ``model shadow`` of a points and half-life change: the shadow replays the input in its
   own consumer group; one worker is killed with SIGKILL while it replays;
3. ``model promote``; the other worker is killed with SIGKILL as the switch begins: after
   it every customer's state equals one offline pass of the new model over the same
   events, the ``model`` changes are the offline comparison's, no id has two contents, and
   a consumer applying the output in order holds the new model's standing;
4. ``model rollback``: the old model, scored all along, is in force again, the same way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from scoring import CustomerState, Model
from stream_app.devkit.stack import LocalService
from stream_app.messages import expected_partition
from stream_app.store.keys import Keys, RegistryKeys
from tests.integration.modelchange import (
    POINTS,
    disagreements,
    downstream_view,
    engaged,
    expected_switch,
    matches,
    model_changes,
    model_cli,
    model_of,
    ok,
    registry,
    same_ids_same_contents,
    stored_states,
    traffic,
    variant,
    wait_processed_in,
)
from tests.integration.workers import (
    OLD_MS,
    REPO,
    Worker,
    launch,
    now_ms,
    relaunch,
    start_worker,
    stop_all,
    unique,
)
from tests.support.diff import state_diff
from tests.support.fold import fold
from tests.support.kafka import MARKER, Message, Sent, in_offset_order

pytestmark = pytest.mark.integration

PARTITIONS = 4


def last_sent(docs: list[dict[str, object]], sent: list[Sent]) -> dict[str, Sent]:
    last: dict[str, Sent] = {}
    for doc, s in zip(docs, sent, strict=True):
        cid = str(doc["customer_id"])
        if cid not in last or s.offset > last[cid].offset:
            last[cid] = s
    return last


def kill(w: Worker) -> None:
    os.kill(w.process.pid, signal.SIGKILL)
    w.process.wait()
    w.redis.close()


def with_model_file(w: Worker, name: str, model_file: Path) -> Worker:
    """Another process of ``w``'s deployment whose ENGAGEMENT_MODEL_FILE is ``model_file``."""
    env = {**w.env, "ENGAGEMENT_MODEL_FILE": str(model_file)}
    url = "redis://{host}:{port}/0".format(**w.redis.connection_pool.connection_kwargs)
    return launch(name, env, w.settings, w.log_path.with_name(f"worker-{name}.log"), url)


def state_problems(
    states: dict[str, CustomerState | None],
    expected: dict[str, CustomerState | None],
    model: Model,
) -> dict[str, list[str]]:
    horizon = now_ms() + 1000
    problems = {}
    for cid, want in expected.items():
        got = states.get(cid)
        if got is None or want is None:
            if got is not want:
                problems[cid] = [f"{got} != {want}"]
            continue
        diffs = state_diff(got, want, model, horizon_ms=horizon, any_order=True, customer_id=cid)
        if diffs:
            problems[cid] = diffs
    return problems


def partitions_switching(messages: list[Message]) -> set[int]:
    """The input partitions of the customers whose model changes are on the output."""
    return {
        expected_partition(str(e["data"]["customer_id"]), PARTITIONS)  # type: ignore[index]
        for e in model_changes(messages)
    }


def cutover(w: Worker) -> dict[bytes, bytes]:
    return w.redis.hgetall(RegistryKeys(w.settings.key_prefix).cutover())  # type: ignore[return-value]


def assigned(w: Worker) -> set[int]:
    """The input partitions faust last assigned to ``w`` (from its log's assignment table)."""
    rows = re.findall(
        rf"\| {re.escape(w.settings.input_topic)} +\| \{{([0-9, -]+)\}} +\|", w.log_tail(200_000)
    )
    if not rows:
        return set()
    out: set[int] = set()
    for part in rows[-1].split(","):
        lo, _, hi = part.strip().partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def freeze_and_kill(workers: list[Worker]) -> tuple[Worker, Worker]:
    """Once the switch is registered, freeze Redis writes: a worker that has read it
    publishes its model changes and then waits to mark its customers switched. Kill -9
    such a worker there (once all of its partitions' changes are on the output), then let
    Redis go on. Returns (the survivor, the victim)."""
    a = workers[0]
    kw = a.redis.connection_pool.connection_kwargs
    ctl = redis.Redis(host=kw["host"], port=kw["port"], db=kw.get("db", 0))
    key = RegistryKeys(a.settings.key_prefix).registry()
    deadline = time.monotonic() + 60
    while ctl.hget(key, "epoch") != b"1":  # a tight poll: pause before any worker is done
        assert time.monotonic() < deadline, "the switch was not registered"
    ctl.execute_command("CLIENT", "PAUSE", "8000", "WRITE")
    try:

        def published() -> Worker | None:
            on_output = partitions_switching(a.read_all(a.settings.output_topic, timeout=5))
            marked = {int(p) for p in cutover(a)}
            for w in workers:
                mine = assigned(w)
                followed = "registry epoch 1" in w.log_tail(50_000)
                if followed and mine and mine <= on_output and not mine & marked:
                    return w
            return None

        victim = a.wait(published, timeout=7, what="a worker's model changes published")
        assert len(cutover(a)) < PARTITIONS  # its marks are not written yet
        kill(victim)
    finally:
        ctl.execute_command("CLIENT", "UNPAUSE")
        ctl.close()
    return next(w for w in workers if w is not victim), victim


def decoded(messages: list[Message]) -> list[dict[str, object]]:
    return [orjson.loads(m.value) for m in messages if m.value != MARKER]


def test_a_points_and_half_life_change_by_replay_survives_kills_and_rolls_back(
    tansu: LocalService, redis_server: LocalService, tmp_path: Path
) -> None:
    new_file = variant(tmp_path, "points", *POINTS)
    a = start_worker(tansu, redis_server, tmp_path, name="rp-a", partitions=PARTITIONS)
    workers = [a, relaunch(a, "rp-b")]
    try:
        a.wait_ready(at_ms=OLD_MS)
        old, new = a.model, model_of(new_file)
        tag = unique("rp")
        docs = traffic(80, 10, seed=5, tag=tag)
        sent = a.produce_events(docs)
        a.wait_processed(last_sent(docs, sent))
        customers = sorted({str(d["customer_id"]) for d in docs})

        # 1. a rolling restart with the new model file changes nothing
        for i, w in enumerate(list(workers)):
            assert not stop_all([w])
            workers[i] = r = with_model_file(w, f"{w.name}-r", new_file)
            r.wait(lambda r=r: "is not the model in force" in r.log_tail(50_000),
                   what="the worker's warning")  # fmt: skip
        a, b = workers
        more = traffic(80, 2, seed=6, tag=tag)
        sent_more = a.produce_events(more)
        a.wait_processed(last_sent(more, sent_more))
        assert registry(a).fields["active"] == "1" and registry(a).epoch == 0
        events = decoded(a.read_all(a.settings.output_topic))
        assert {e["data"]["model_version"] for e in events} == {1}  # type: ignore[index]
        assert not a.redis.keys(Keys(a.settings.key_prefix, "default@2").all_pattern())

        # 2. the shadow replays in its own consumer group; kill -9 a worker meanwhile
        shown = ok(model_cli(a, "shadow", str(new_file)))
        assert "replayed" in shown
        b.wait(lambda: "replaying default v2" in b.log_tail(50_000), what="b's replay")
        assert len(engaged(a, 2)) < PARTITIONS  # still replaying
        kill(b)
        workers[1] = b = relaunch(a, "rp-b2")
        live = traffic(80, 2, seed=7, tag=tag)
        sent_live = a.produce_events(live)
        a.wait(lambda: len(engaged(a, 2)) == PARTITIONS, timeout=90, what="the shadow engaged")
        wait_processed_in(a, "default", last_sent(live, sent_live))
        wait_processed_in(a, "default@2", last_sent(live, sent_live))
        all_docs, all_sent = docs + more + live, sent + sent_more + sent_live
        in_order = in_offset_order(all_docs, all_sent)
        offline_old = {c: f.state for c, f in fold(in_order, old).items() if c in customers}
        offline_new = {c: f.state for c, f in fold(in_order, new).items() if c in customers}
        shadow = stored_states(a, "default@2", new, customers)
        assert not state_problems(shadow, offline_new, new)  # the shadow, before promotion

        # 3. promote; Redis writes are frozen so that the switch stops between publishing
        #    its changes and marking the customers switched; one worker is killed there
        with subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "model", "promote", "--wait", "120"],
            env=a.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ) as promote:  # fmt: skip
            try:
                b, victim = freeze_and_kill([a, b])
                out, _ = promote.communicate(timeout=150)
            finally:
                if promote.poll() is None:
                    promote.kill()
        assert promote.returncode == 0 and "every partition switched" in out, out
        first_switch = registry(b).switched_at
        states = stored_states(b, "default@2", new, customers)
        assert not state_problems(states, offline_new, new)
        messages = b.read_all(b.settings.output_topic)
        events = decoded(messages)
        assert not same_ids_same_contents(events)  # type: ignore[arg-type]
        expected = expected_switch(offline_old, old, offline_new, new, first_switch)
        assert expected
        switch = model_changes(messages)
        published = {str(e["id"]): e for e in switch}
        assert not matches(published, expected)  # type: ignore[arg-type]
        assert len(switch) > len(published)  # the killed worker's share, published again
        view = downstream_view(messages)
        assert not disagreements({c: view.get(c, ("", frozenset())) for c in customers},
                                 states, new)  # fmt: skip

        # 4. roll back: the old model was scored all along
        workers[workers.index(victim)] = a = relaunch(b, "rp-a2")
        a.wait(lambda: "scoring with model" in a.log_tail(50_000), what="rp-a2 running")
        out = ok(model_cli(b, "rollback", "--wait", "90"))
        assert "rolled back" in out and "every partition switched" in out, out
        back_at = registry(b).switched_at
        old_states = stored_states(b, "default", old, customers)
        assert not state_problems(old_states, offline_old, old)
        messages = b.read_all(b.settings.output_topic)
        events = decoded(messages)
        assert not same_ids_same_contents(events)  # type: ignore[arg-type]
        expected_back = expected_switch(offline_new, new, offline_old, old, back_at)
        back = {str(e["id"]): e for e in model_changes(messages)
                if e["data"]["occurred_at_ms"] == back_at}  # fmt: skip
        assert not matches(back, expected_back)  # type: ignore[arg-type]
        view = downstream_view(messages)
        assert not disagreements({c: view.get(c, ("", frozenset())) for c in customers},
                                 old_states, old)  # fmt: skip
    finally:
        unclean = stop_all([w for w in workers if w.process.poll() is None])
    assert not unclean, "\n".join(unclean)

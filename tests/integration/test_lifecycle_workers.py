"""Erase and merge against real Tansu and Redis: two worker processes of one deployment,
requests sent by the CLI, by the HTTP API and by a producer, a kill -9 while they are
processed.

Every merge joins two customers on partitions owned by different workers; the one owning
the merged-away customers is killed -9 amid a burst of merges, then started again. The
expected results come from the definition, not from ``scoring.merge``: the survivor's
values at its clock are the sum of both customers' values there (plus the late event sent
to the merged-away id after the request), within 1e-9 relative. Change ids are checked
against one offline pass of the scoring core.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from scoring import CustomerState, Event, apply, decode_state, values_at
from scoring.lifecycle import Request, lifecycle_event
from scoring.merge import departure, merge
from stream_app.contracts import cloudevent
from stream_app.devkit.stack import LocalService, free_port
from stream_app.kafka.topics import prepare
from stream_app.messages import expected_partition
from stream_app.settings import Settings
from stream_app.store.lifecycle import digest
from stream_app.store.records import decode_record
from tests.integration.api.client import http_get, http_post
from tests.integration.workers import (
    REPO,
    Worker,
    assigned,
    event,
    launch,
    now_ms,
    stop_all,
    worker_env,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4
SECRET = "lifecycle-secret"
ADMIN = "admin-token"
PAIRS = 10


def ids_on(partitions: set[int], prefix: str, n: int) -> list[str]:
    """``n`` ids owned by one of ``partitions``."""
    out, k = [], 0
    while len(out) < n:
        cid = f"{prefix}{k}"
        if expected_partition(cid, PARTITIONS) in partitions:
            out.append(cid)
        k += 1
    return out


def history(cid: str, start: int) -> list[dict[str, Any]]:
    kinds = ["webinar_attended", "review_submitted", "webinar_attended", "email_click"]
    docs = [event(f"{cid}/{n}", cid, k, start + n * 1000) for n, k in enumerate(kinds)]
    return [*docs, event(f"{cid}/nps", cid, "nps_response", start + 9000, score=9)]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app.cli", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def http(port: int, method: str, path: str, body: object = None, token: str = ADMIN) -> Any:
    """(status, JSON body or None, Location header) of one request."""
    if method == "POST":
        reply = http_post(port, path, b"" if body is None else orjson.dumps(body), token=token)
    else:
        reply = http_get(port, path, token=token)
    return reply.status, reply.json() if reply.body else None, reply.headers.get("Location")


@pytest.fixture
def deployment(
    tansu: LocalService, redis_server: LocalService, tmp_path: Path
) -> Iterator[tuple[list[Worker], int]]:
    port = free_port()
    env = worker_env(
        tansu, redis_server, tmp_path, name="lc", partitions=PARTITIONS,
        ENGAGEMENT_SUPPRESSION_SECRET=SECRET, ENGAGEMENT_ADMIN_TOKENS=ADMIN,
        ENGAGEMENT_BATCH_SIZE="5",
    )  # fmt: skip
    settings = Settings.from_env(env)
    asyncio.run(prepare(settings, timeout_s=30.0))
    web = {**env, "ENGAGEMENT_DATA_DIR": str(tmp_path / "f0"), "ENGAGEMENT_WEB_ENABLED": "true",
           "ENGAGEMENT_WEB_PORT": str(port)}  # fmt: skip
    other = {**env, "ENGAGEMENT_DATA_DIR": str(tmp_path / "f1")}
    workers = [
        launch("lc-web", web, settings, tmp_path / "w0.log", redis_server.url),
        launch("lc-other", other, settings, tmp_path / "w1.log", redis_server.url),
    ]
    try:
        yield workers, port
    finally:
        problems = stop_all(workers)
        assert not problems, problems


def trace(w: Worker, needle: str) -> list[str]:
    """Keys under the deployment's prefix whose name or content holds ``needle``."""
    r, found, n = w.redis, [], needle.encode()
    for key in r.scan_iter(match=w.keys.base + ":*", count=1000):
        kind = r.type(key).decode()  # type: ignore[union-attr]
        values: list[bytes] = []
        if kind == "string":
            values = [r.get(key)]  # type: ignore[list-item]
        elif kind == "hash":
            values = [x for kv in r.hgetall(key).items() for x in kv]  # type: ignore[union-attr]
        elif kind == "zset":
            values = list(r.zrange(key, 0, -1))  # type: ignore[arg-type]
        elif kind == "set":
            values = list(r.smembers(key))  # type: ignore[arg-type]
        if n in key or any(n in v for v in values):
            found.append(key.decode())
    return found


def tiers(w: Worker) -> tuple[dict[str, int], dict[str, int]]:
    """(the tier counts, a recount of every stored state)."""
    recount = {t.name: 0 for t in w.model.tiers}
    for key in w.redis.scan_iter(match=w.keys.base + ":state:*", count=1000):
        record = decode_record(w.redis.get(key))  # type: ignore[arg-type]
        assert record.state is not None
        recount[decode_state(record.state, w.model).tier_name(w.model)] += 1
    counts = {t.name: 0 for t in w.model.tiers}
    for k, v in w.redis.hgetall(w.keys.tier_counts()).items():  # type: ignore[union-attr]
        counts[k.decode()] = int(v)
    return counts, recount


def kill_and_restart(workers: list[Worker], i: int) -> None:
    """kill -9 worker ``i`` and start it again (same environment)."""
    victim = workers[i]
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait()
    victim.redis.close()
    log = victim.log_path.with_name(f"{victim.name}-again.log")
    workers[i] = launch(f"{victim.name}-again", victim.env, victim.settings, log,
                        victim.settings.redis_url)  # fmt: skip


def send_merges(
    workers: list[Worker], port: int, pairs: list[tuple[str, str]], late_at: int
) -> list[Request]:
    """Merge requests, each followed by a late event of the merged-away customer: the
    first by the API, the second by the CLI, the others in one burst by a producer, during
    which the worker owning the merged-away customers is killed -9 as soon as it retired
    the first of them (then started again)."""
    w, requests = workers[0], []
    for i, (src, dst) in enumerate(pairs[:2]):
        if i == 0:
            status, body, _ = http(port, "POST", f"/v1/customers/{src}/merge", {"into": dst})
            assert status == 202, body
        else:
            body = orjson.loads(cli(w.env, "merge", src, dst).stdout)
        requests.append(Request("merge", body["request_id"], src, 0, dst))
        w.produce_events([event(f"late-{src}", src, "webinar_attended", late_at)])
    burst = []
    for src, dst in pairs[2:]:
        requests.append(Request("merge", f"req-{src}", src, 0, dst))
        merge_doc = {"event_id": f"req-{src}", "customer_id": src, "timestamp": now_ms(),
                     "type": "engagement.customer.merge", "properties": {"into": dst}}  # fmt: skip
        burst += [merge_doc, event(f"late-{src}", src, "webinar_attended", late_at)]
    keys = [w.keys.state(src) for src, _ in pairs[2:]]
    w.produce_events(burst)
    deadline = time.monotonic() + 60
    while w.redis.exists(*keys) == len(keys):  # poll tightly: kill amid the burst
        assert time.monotonic() < deadline, "the burst was never processed"
        time.sleep(0.002)
    kill_and_restart(workers, 1)
    print(f"kill -9 with {w.redis.exists(*keys)} of {len(keys)} merges of the burst left")
    return requests


def check_sums(
    w: Worker, before: dict[str, CustomerState | None], merged: list[tuple[list[str], str]]
) -> None:
    """Each survivor's values at its clock: the sum of its customers' values there, plus
    the late event (within 1e-9 relative)."""
    model = w.model
    late = model.event_types["webinar_attended"]
    for sources, dst in merged:
        final = w.state(dst)
        assert final is not None
        parts = [before[x] for x in [*sources, dst]]
        for dim in model.dimensions:
            want = sum(values_at(p, model, final.clock_ms).dimensions[dim] for p in parts if p)
            want += late.points if dim == late.dimension else 0.0
            got = values_at(final, model, final.clock_ms).dimensions[dim]
            assert math.isclose(got, want, rel_tol=1e-9), (dst, dim, got, want)
        for src in sources:
            assert w.record(src) is None and w.redis.get(w.keys.alias(src)) is not None


def check_published(
    w: Worker, before: dict[str, CustomerState | None], requests: list[Request], start: int,
    late_at: int,
) -> int:  # fmt: skip
    """Every change id of one offline pass is on the output topic with one content, and no
    other for the survivors; for each merged-away customer, its exits from its tier and
    segments and the announcement, and nothing else; returns how many messages were copies."""
    model, out = w.model, w.read_all(w.settings.output_topic)
    contents: dict[str, set[bytes]] = defaultdict(set)
    subjects: dict[str, set[str]] = defaultdict(set)
    for m in out:
        doc = m.json()
        contents[doc["id"]].add(m.value)
        subjects[doc["subject"]].add(doc["id"])
    assert all(len(v) == 1 for v in contents.values()), "an id with two contents"

    def offline(cid: str) -> tuple[CustomerState | None, set[str]]:
        state, ids = None, set()
        for e in history(cid, start):
            score = e.get("properties", {}).get("score")
            done = apply(state, Event(e["event_id"], cid, e["type"], e["timestamp"], score),
                         model)  # fmt: skip
            state, ids = done.state, ids | {ch.change_id for ch in done.changes}
        assert state == before[cid]
        return state, ids

    for req in requests:
        src, dst = req.customer_id, req.into
        assert dst is not None
        into, expected = offline(dst)
        pre_src, src_ids = offline(src)
        assert pre_src is not None
        merged = merge(into, pre_src, model, customer_id=dst, request_id=req.request_id)
        assert merged.changes, f"merging {src} into {dst} moved nothing: a weak test"
        late = Event(f"late-{src}", dst, "webinar_attended", late_at)
        expected |= {ch.change_id for ch in merged.changes}
        expected |= {ch.change_id for ch in apply(merged.state, late, model).changes}
        assert subjects[dst] == expected, (dst, expected - subjects[dst], subjects[dst] - expected)
        exits = departure(pre_src, model, customer_id=src, request_id=req.request_id)
        assert len(exits) > 1, f"{src} was in no segment: a weak test"
        src_ids |= {lifecycle_event(req, model).event_id} | {ch.change_id for ch in exits}
        assert subjects[src] == src_ids, (src, src_ids ^ subjects[src])
        for ch in exits:  # (their content too: cause merge, the request, no tier entered)
            data = orjson.loads(next(iter(contents[ch.change_id])))["data"]
            assert data == cloudevent(ch)["data"]
    return len(out) - len(contents)


def check_erased(w: Worker, port: int, gone: list[str]) -> None:
    """No trace but the keyed hash; 404; ``score`` exits 1."""
    for cid in gone:
        assert trace(w, cid) == [], (cid, trace(w, cid))
        assert w.redis.hget(w.keys.suppression(cid), digest(SECRET.encode(), cid))
        status, body, _ = http(port, "GET", f"/v1/customers/{cid}")
        assert (status, body["error"]["code"]) == (404, "erased")
        proc = cli(w.env, "score", cid)
        assert proc.returncode == 1 and "was erased" in proc.stderr


def test_merges_and_erases_survive_a_kill_9_across_two_workers(
    deployment: tuple[list[Worker], int],
) -> None:
    workers, port = deployment
    w = workers[0]
    w.wait_ready()

    def owned() -> list[set[int]] | None:
        found = [assigned(x) or set() for x in workers]
        return found if all(found) and not found[0] & found[1] else None

    mine, theirs = w.wait(owned, timeout=60.0, what="both workers own partitions")
    sources, survivors = ids_on(theirs, "src-", PAIRS + 1), ids_on(mine, "dst-", PAIRS + 1)
    chain = [sources.pop(), survivors.pop(), ids_on(theirs, "tip-", 1)[0]]  # a -> b, b -> c
    gone = ids_on(mine | theirs, "erase-me-", 3)
    everyone = [*sources, *survivors, *chain, *gone]
    start = now_ms() - 3_600_000
    w.produce_events([e for cid in everyone for e in history(cid, start)])

    def applied() -> bool:
        return all(s is not None and s.events_applied == 5 for s in w.states(everyone).values())

    w.wait(applied, timeout=90.0, what="every history applied")
    before = w.states(everyone)

    late_at = now_ms()
    requests = send_merges(workers, port, list(zip(sources, survivors, strict=True)), late_at)
    for cid in gone:
        status, body, _ = http(port, "POST", f"/v1/customers/{cid}/erase")
        assert status == 202 and body["customer_id"] == cid
        w.produce_events([event(f"late-{cid}", cid, "webinar_attended", late_at)])
    a, b, c = chain
    cli(w.env, "merge", a, b)
    w.wait(lambda: w.record(a) is None and w.record(b) is not None, timeout=90, what="a into b")
    cli(w.env, "merge", b, c)
    w.produce_events([event("late-chain", a, "webinar_attended", late_at)])

    applied_then = {dst: 11 for dst in survivors} | {c: 16}  # 5 + 5 (+ 5) + the late one

    def done() -> bool:
        merged = all((s := w.state(x)) and s.events_applied == n for x, n in applied_then.items())
        return merged and all(w.record(x) is None for x in [*sources, a, b, *gone])

    w.wait(done, timeout=120.0, what="every merge and erase done")
    check_sums(w, before, [*(([s], d) for s, d in zip(sources, survivors, strict=True)),
                           ([a, b], c)])  # fmt: skip
    copies = check_published(w, before, requests, start, late_at)
    print(f"{copies} change messages published again after the kill -9")
    check_erased(w, port, gone)
    status, _, location = http(port, "GET", f"/v1/customers/{sources[0]}/explain")
    assert (status, location) == (308, f"/v1/customers/{survivors[0]}/explain")
    proc = cli(w.env, "score", sources[0])
    assert proc.returncode == 1 and f"merged into {survivors[0]!r}" in proc.stderr
    counts, recount = tiers(w)
    assert counts == recount
    assert http(port, "POST", f"/v1/customers/{c}/erase", token="wrong")[0] == 401

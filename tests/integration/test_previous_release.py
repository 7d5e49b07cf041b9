"""The previous release's own worker against records this release wrote: with
``ENGAGEMENT_WRITE_FORMAT=previous`` it scores on from them (no dead letter, the offline
fold's scores); without the setting it cannot read them (``corrupt_state``), which is why
the upgrade takes two rolling restarts (docs/deployment.md).

The previous release is its source tree at :data:`PREVIOUS_RELEASE` (main before record
format 2 and explanation format 4), taken from the repository's history and run with this
environment's packages. Drop this module once that release is no longer upgraded from.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from stream_app.devkit.stack import LocalService
from stream_app.settings import Settings
from tests.integration.workers import REPO, Worker, dumps, event, launch, now_ms, start_worker
from tests.support.diff import state_diffs
from tests.support.fold import fold
from tests.support.kafka import Message, Sent

pytestmark = pytest.mark.integration

#: The last commit of the previous release (what a deployment upgrading from it runs).
PREVIOUS_RELEASE = "abf6c2a7870c1b93faa29ef6b2d41ed7b0cddc4c"
CUSTOMERS = [f"pr-{n}" for n in range(12)]
#: A record the previous release wrote: its write ids are hex (10 digits of epoch), its
#: marks text.
PREVIOUS_WRITE = re.compile(rb"\A[0-9]+\.[0-9a-f]{11,} [a-z0-9]+=[0-9]+")
KINDS = ["webinar_attended", "email_click", "review_submitted", "web_visit"]


def previous_tree(into: Path) -> Path:
    """The previous release's source tree, extracted under ``into``."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("no git to take the previous release from the history")
    found = subprocess.run(
        [git, "-C", str(REPO), "archive", "--format=tar", PREVIOUS_RELEASE],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    if found.returncode != 0:
        pytest.skip(f"the previous release is not in this clone's history: {found.stderr[:200]!r}")
    with tarfile.open(fileobj=io.BytesIO(found.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def last_sent(docs: list[dict[str, object]], sent: list[Sent]) -> dict[str, Sent]:
    return {str(d["customer_id"]): s for d, s in zip(docs, sent, strict=True)}


@pytest.mark.parametrize("write_format", ["previous", "current"])
def test_the_previous_release_scores_on_from_what_previous_wrote(
    tansu: LocalService, redis_server: LocalService, tmp_path: Path, write_format: str
) -> None:
    tree = previous_tree(tmp_path / "previous-release")
    start = now_ms() - 3_600_000
    first = [
        event(f"{c}/{n}", c, k, start + n * 1000) for c in CUSTOMERS for n, k in enumerate(KINDS)
    ]
    new = start_worker(
        tansu, redis_server, tmp_path, name="pr", ENGAGEMENT_WRITE_FORMAT=write_format
    )
    try:
        new.wait_ready()
        new.wait_processed(last_sent(first, new.produce_events(first)))
    finally:
        assert new.stop(), new.log_tail()
    # the previous release's worker, in the same deployment: its code first on the path,
    # not this checkout's (PYTHONSAFEPATH: the working directory is not put first)
    env = {k: v for k, v in new.env.items() if k != "ENGAGEMENT_WRITE_FORMAT"}
    env.update(PYTHONSAFEPATH="1", PYTHONPATH=str(tree), ENGAGEMENT_DATA_DIR=str(tmp_path / "p"))
    old = launch(
        "previous", env, Settings.from_env(new.env), tmp_path / "prev.log", redis_server.url
    )
    try:
        later = [event(f"{c}/late", c, "email_open", start + 60_000) for c in CUSTOMERS]
        sent = last_sent(later, old.produce_events(later))
        if write_format == "previous":
            check_scored_on(old, first + later, sent)
        else:
            letters = old.read(
                old.settings.dlq_topic,
                lambda ms: len(corrupt(ms)) >= len(CUSTOMERS),
                what="a corrupt_state dead letter per customer",
            )
            assert {m.key for m in corrupt(letters)} == {c.encode() for c in CUSTOMERS}
    finally:
        assert old.stop(), old.log_tail()


def corrupt(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.value and b'"reason":"corrupt_state"' in m.value]


def check_scored_on(old: Worker, docs: list[dict[str, object]], sent: dict[str, Sent]) -> None:
    old.wait_processed(sent)
    log = old.log_tail(2_000_000)
    assert "corrupt_state" not in log, log[-3000:]
    assert not old.read_all(old.settings.dlq_topic)
    expected = fold([dumps(d) for d in docs], old.model)
    states = {c: old.state(c) for c in CUSTOMERS}
    want = {c: expected[c].state for c in CUSTOMERS}
    diffs = state_diffs(states, want, old.model, horizon_ms=now_ms())
    assert not diffs, diffs
    for c in CUSTOMERS:  # written by the previous release: format 1, a hex write id
        raw = old.redis.get(old.keys.state(c))
        assert isinstance(raw, bytes) and PREVIOUS_WRITE.match(raw), raw[:40]

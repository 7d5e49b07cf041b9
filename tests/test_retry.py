"""Retries: which failures are waited out (and counted by cause), which are isolated."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence

import pytest
import redis.exceptions as rx
from aiokafka import errors as kx

from stream_app.messages import Record
from stream_app.worker.batch import WriteConflicts
from stream_app.worker.errors import transient_cause
from stream_app.worker.retry import Backoff, Liveness, RetryPolicy, until_done


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (rx.ConnectionError("Connection refused"), "connection"),
        (ConnectionResetError(), "connection"),
        (rx.TimeoutError("Timeout reading from socket"), "timeout"),
        (TimeoutError(), "timeout"),
        (rx.BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (rx.ResponseError("BUSY Redis is busy running a script."), "busy"),
        (rx.ReadOnlyError("You can't write against a read only replica."), "failover"),
        (rx.ResponseError("MASTERDOWN Link with MASTER is down"), "failover"),
        (rx.ClusterDownError("The cluster is down"), "failover"),
        (rx.TryAgainError("Multiple keys request during rehashing of slot"), "failover"),
        (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "oom"),
        (rx.NoPermissionError("this user has no permissions"), "auth"),
        (rx.AuthenticationError("invalid password"), "auth"),
        (kx.KafkaConnectionError("no broker"), "connection"),
        (kx.RequestTimedOutError(), "kafka"),
        (kx.NotLeaderForPartitionError(), "kafka"),
        (kx.TopicAuthorizationFailedError(), "auth"),
        (WriteConflicts("kept losing"), "conflict"),
        (rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), None),
        (rx.ResponseError("ERR Error running script"), None),
        (kx.MessageSizeTooLargeError(), None),
        (ValueError("bad record"), None),
    ],
)
def test_transient_causes(exc: BaseException, cause: str | None) -> None:
    assert transient_cause(exc) == cause


def test_backoff_is_exponential_jittered_and_capped() -> None:
    draws = iter([0.0, 1.0] * 10)
    b = Backoff(cap=0.3, rng=lambda: next(draws))
    waits = [b.next() for _ in range(6)]
    assert waits == [0.025, 0.1, 0.1, 0.3, 0.15, 0.3]
    assert all(0 < w <= 0.3 for w in waits)


class Flaky:
    """Fails with the given exceptions first, then records what it processed."""

    def __init__(self, failures: Sequence[BaseException], poison: int | None = None) -> None:
        self.failures = list(failures)
        self.poison = poison
        self.done: list[list[int]] = []

    async def __call__(self, records: Sequence[Record]) -> object:
        if self.failures:
            raise self.failures.pop(0)
        offsets = [r.offset for r in records]
        if self.poison in offsets:
            raise KeyError("a bug nobody isolated")
        self.done.append(offsets)
        return "ok"


def _policy(process: Flaky, retries: Counter[str], dead: list[tuple[int, str]]) -> RetryPolicy:
    async def dead_letter(failed: Sequence[tuple[Record, str]]) -> None:
        dead.extend((r.offset, detail) for r, detail in failed)

    return RetryPolicy(
        process=process,
        dead_letter=dead_letter,
        on_retry=lambda cause: retries.update([cause]),
        liveness=Liveness(last_progress=0.0),
        max_backoff_s=0.01,
    )


def _records(n: int) -> list[Record]:
    return [Record("in", 0, i, None, b"{}", timestamp=1000.0 + i) for i in range(n)]


def test_transient_failures_are_retried_counted_and_seen_by_the_health_checks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    process = Flaky([rx.ConnectionError("refused"), rx.OutOfMemoryError("OOM"), OSError()])
    retries: Counter[str] = Counter()
    policy = _policy(process, retries, [])
    seen: list[tuple[float | None, str | None, float | None]] = []
    real = policy.on_retry
    policy.on_retry = lambda cause: (
        real(cause),
        seen.append(
            (
                policy.liveness.retrying_since,
                policy.liveness.retry_cause,
                policy.liveness.oldest_in_hand,
            )
        ),
    )[0]
    with caplog.at_level(logging.WARNING, logger="stream_app.worker"):
        assert asyncio.run(until_done(policy, _records(3))) == "ok"
    assert retries == {"connection": 2, "oom": 1}
    assert [cause for _, cause, _ in seen] == ["connection", "oom", "connection"]
    assert all(since is not None and oldest == 1000.0 for since, _, oldest in seen)
    assert process.done == [[0, 1, 2]]
    live = policy.liveness
    assert live.retrying_since is None and live.oldest_in_hand is None and live.last_progress > 0
    assert caplog.text.count("waits") == 3 and "(oom)" in caplog.text


def test_a_batch_that_keeps_failing_is_split_and_only_the_culprit_dead_lettered() -> None:
    process = Flaky([], poison=2)
    retries: Counter[str] = Counter()
    dead: list[tuple[int, str]] = []
    began = time.monotonic()
    assert asyncio.run(until_done(_policy(process, retries, dead), _records(4))) is None
    assert process.done == [[0], [1], [3]]
    assert dead == [(2, "KeyError: 'a bug nobody isolated'")]
    assert retries == {"error": 2}  # the batch's first two failures (the third splits it)
    assert time.monotonic() - began < 5.0

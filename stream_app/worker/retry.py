"""How a batch is retried, and what the health checks learn from it.

* A failure retrying can cure (:func:`stream_app.worker.errors.transient_cause`: Redis
  or the broker unreachable, a timeout, ``LOADING``, ``BUSY``, a failover, ``OOM`` under
  ``noeviction``, refused credentials) is retried in place, for as long as it takes, after
  a jittered exponential backoff (50 ms doubling up to ``ENGAGEMENT_RETRY_MAX_BACKOFF_S``,
  each wait drawn between half and all of that). Each retry is logged with its cause and
  counted (``engagement_retries_total{cause}``); while it lasts, ``/readyz`` fails, and
  ``/healthz`` does once it has lasted ``ENGAGEMENT_STALL_SECONDS``.
* Any other failure is not the world's fault. The batch processor keeps failures of one
  message or one customer to it, so one that reaches this far is a bug the isolation did
  not foresee: the batch is tried :data:`ATTEMPTS` times (cause ``error``), then split,
  and its messages are processed one at a time, in order; a message that fails on its
  own is dead-lettered (``internal_error``), so the partition moves on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from stream_app.aioutil import raise_if_cancelled
from stream_app.messages import Record
from stream_app.worker.errors import describe, transient_cause

log = logging.getLogger("stream_app.worker")

#: Tries of a whole batch failing for no known transient cause, before it is split.
ATTEMPTS = 3
FIRST_DELAY_S = 0.05


class Backoff:
    """Jittered exponential backoff: the n-th wait is drawn from [d/2, d], d = first * 2^n,
    capped at ``cap``.

    >>> b = Backoff(cap=1.0, rng=lambda: 1.0)
    >>> [b.next() for _ in range(7)]
    [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    """

    def __init__(
        self, cap: float, first: float = FIRST_DELAY_S, rng: Callable[[], float] = random.random
    ) -> None:
        self.cap = cap
        self.first = first
        self.rng = rng
        self.n = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.first * 2.0**self.n)
        self.n = min(self.n + 1, 62)
        return ceiling / 2 + self.rng() * ceiling / 2


@dataclass
class Liveness:
    """What the health checks read: when the worker last got something done, whether it
    is retrying (since when, why), and the oldest message it holds unprocessed."""

    #: When a batch last completed (``time.monotonic()``); the start, before the first.
    last_progress: float
    retrying_since: float | None = None
    retry_cause: str | None = None
    #: The Kafka timestamp (s) of the oldest message of the batch in hand, if any.
    oldest_in_hand: float | None = None

    def progressed(self) -> None:
        self.last_progress = time.monotonic()
        self.retrying_since = self.retry_cause = None
        self.oldest_in_hand = None

    def retrying(self, cause: str) -> None:
        if self.retrying_since is None:
            self.retrying_since = time.monotonic()
        self.retry_cause = cause

    def oldest_age(self, now: float) -> float:
        """Seconds since the oldest message in hand was produced (0: none in hand)."""
        return 0.0 if self.oldest_in_hand is None else max(0.0, now - self.oldest_in_hand)


@dataclass
class RetryPolicy:
    """The retry loop's dependencies: how to process, dead-letter and report."""

    process: Callable[[Sequence[Record]], Awaitable[object]]
    #: The dead letters of records that failed on their own, published (acks awaited).
    dead_letter: Callable[[Sequence[tuple[Record, str]]], Awaitable[None]]
    on_retry: Callable[[str], None]
    liveness: Liveness
    max_backoff_s: float


async def until_done(policy: RetryPolicy, records: Sequence[Record]) -> object:
    """Process ``records`` (see the module); the processor's result, or None when the
    batch had to be split (each part's result went through ``policy.process``)."""
    policy.liveness.oldest_in_hand = min(
        (r.timestamp for r in records if r.timestamp is not None), default=None
    )
    result = await _attempt(policy, lambda: policy.process(records), len(records), ATTEMPTS)
    if result is not _FAILED:
        policy.liveness.progressed()
        return result
    log.error("batch of %d keeps failing; processing its messages one at a time", len(records))
    failed: list[tuple[Record, str]] = []
    for rec in records:
        error: list[str] = []
        outcome = await _attempt(policy, _one(policy, rec), 1, 1, error)
        if outcome is _FAILED:
            failed.append((rec, error[-1]))
    if failed:
        await _attempt(policy, lambda: policy.dead_letter(failed), len(failed), None)
    policy.liveness.progressed()
    return None


_FAILED = object()


def _one(policy: RetryPolicy, rec: Record) -> Callable[[], Awaitable[object]]:
    return lambda: policy.process([rec])


async def _attempt(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[object]],
    size: int,
    attempts: int | None,
    errors: list[str] | None = None,
) -> object:
    """``call()`` until it succeeds; transient failures are retried without end, others
    ``attempts`` times (None: without end) before :data:`_FAILED` is returned."""
    backoff = Backoff(policy.max_backoff_s)
    failures = 0
    while True:
        try:
            result = await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            cause = transient_cause(exc)
            delay = backoff.next()
            if cause is None:
                failures += 1
                if errors is not None:
                    errors.append(describe(exc))
                if attempts is not None and failures >= attempts:
                    log.exception("batch of %d failed %d times: %s", size, failures, exc)
                    return _FAILED
                log.warning("batch of %d failed; retrying in %.2fs: %s", size, delay, describe(exc))
                cause = "error"
            else:
                log.warning(
                    "batch of %d waits %.2fs to retry (%s): %s", size, delay, cause, describe(exc)
                )
            policy.liveness.retrying(cause)
            policy.on_retry(cause)
            raise_if_cancelled()
            await asyncio.sleep(delay)  # back-off, not synchronisation
            continue
        raise_if_cancelled()
        return result

"""The batch input path: whole fetches to the scoring task, without faust's per-message
machinery, faust still the framework.

faust-streaming 0.15.3 hands every fetched message over one at a time: its fetcher
(``Consumer._drain_messages``) turns each record into a ``ConsumerMessage``, passes it
through ``wait_first`` to the conductor's per-partition callback (flow control, the
producer's buffer, decoding into an ``Event``, the channel's queue), and a stream takes it
out again, runs its processors and, once acked, gives it back to the consumer's ack
bookkeeping. That costs ~40 µs per message (docs/performance.md), where a plain aiokafka
consumer spends 3.

:class:`BatchInput` replaces only the fetcher's loop, on the consumer faust builds
(:meth:`attach`, through :class:`.app.ScorerApp`). It calls faust's own fetch step
(``Consumer._wait_next_records``: flow control, active and paused partitions, the
consumer thread), applies faust's rules to each record (the read offset per partition,
gaps added to the ack bookkeeping, records of partitions no longer active skipped),
turns the records of its topics into :class:`stream_app.messages.Record` and puts the
whole fetch in its :class:`.inbox.Inbox` at once. :meth:`run` takes batches out, hands
them to the scorer and acks them after it returns: :meth:`ack` is faust's
``Consumer.ack`` for a whole batch (the same offsets, the same checks, under the same
lock), so faust's commit timer still commits only offsets below which every record was
acked. Everything else stays faust's: the app, the group membership and rebalances (in
the consumer thread), the commits, timers, the web server, the producer.

**Back-pressure.** A put waits while the inbox holds a batch's worth of records; the
fetcher waits with it, so memory stays bounded (one batch being scored, up to one more
buffered, plus one fetch), exactly as faust's fetcher waits on a full stream buffer.

**Rebalances.** faust stops the fetcher's flow, then clears its streams' queues through
its flow control (``App._on_partitions_revoked``); the inbox is one of those queues, so
records fetched but not yet taken are dropped, and a put still waiting for room gives
up. They were never acked, and faust seeks every assigned partition back to its
committed offset before fetching again: the new owner (or this worker) reads them again.
A fetch that comes back after the flow stopped, or under another consumer generation,
is dropped the same way. A batch already taken is scored to the end and acked, as the
stream path did with the events it had taken (the fenced writes make a late write for a
lost partition harmless; faust discards commits of revoked partitions). While a batch is
being scored it is one entry in faust's set of unacked messages, so ``wait_empty``
(``stream_wait_empty``, on revoke and at shutdown) waits for it as for a message.

Every faust private used here is listed in :mod:`.compat` and checked at start-up;
:meth:`attach` checks the consumer's instance attributes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from stream_app.aioutil import raise_if_cancelled
from stream_app.faustx.adapters import headers_of
from stream_app.faustx.compat import FaustIncompatible
from stream_app.faustx.inbox import Inbox
from stream_app.messages import Record

__all__ = ["BatchInput"]

log = logging.getLogger("stream_app.faustx")

#: What the fetcher flags while it fetches (faust's ``CONSUMER_FETCHING``).
FETCHING = "FETCHING"
#: The consumer's instance attributes :meth:`BatchInput.attach` relies on.
CONSUMER_ATTRIBUTES = (
    "_read_offset",
    "_committed_offset",
    "_acked",
    "_acked_index",
    "_unacked_messages",
    "_buffered_partitions",
    "_stopped",
    "suspend_flow",
    "diag",
)

Handler = Callable[[Sequence[Record]], Awaitable[object]]


class _InFlight:
    """A batch being scored, as faust's ``wait_empty`` sees it: one unacked message."""

    __slots__ = ("__weakref__", "acked", "refcount", "size")

    def __init__(self, size: int) -> None:
        self.acked, self.refcount, self.size = False, 1, size

    def __repr__(self) -> str:
        return f"<batch of {self.size} records being scored>"


class BatchInput:
    """The fetcher's loop for ``topics``, whole fetches into an :class:`Inbox` (see the
    module). Build it with :meth:`register` before the app starts."""

    def __init__(self, app: Any, topics: Sequence[str], max_batch: int, window: float) -> None:
        self._app = app
        self.topics = frozenset(topics)
        self.inbox = Inbox(max_batch, window)
        self._consumer: Any = None

    @classmethod
    def register(cls, app: Any, channel: Any, max_batch: int, window: float) -> BatchInput:
        """Subscribe ``app`` to ``channel``'s topics (faust's conductor, acks on) and have
        its consumer fetch them into a new :class:`BatchInput`."""
        if not isinstance(getattr(app, "consumer_hooks", None), list):
            raise FaustIncompatible("the batch input path needs stream_app.faustx.app.ScorerApp")
        intake = cls(app, tuple(channel.topics), max_batch, window)
        app.topics.add(channel)  # what the consumer subscribes to; acks enabled for them
        app.flow_control.manage_queue(intake.inbox)  # cleared with the streams' queues
        if app._consumer is not None:  # built already (not started: the app is not)
            intake.attach(app._consumer)
        else:
            app.consumer_hooks.append(intake.attach)  # (ScorerApp: when faust builds it)
        return intake

    def attach(self, consumer: Any) -> None:
        """Replace ``consumer``'s fetcher loop by this one (before the app starts it)."""
        missing = [a for a in CONSUMER_ATTRIBUTES if not hasattr(consumer, a)]
        if missing:
            raise FaustIncompatible(
                f"stream_app.faustx.intake: faust's consumer lacks {', '.join(missing)}"
            )
        self._consumer = consumer
        consumer._drain_messages = self._drain  # faust's Fetcher calls it with itself

    # -- the scoring side ------------------------------------------------------------

    async def run(self, handle: Handler) -> None:
        """Forever: take a batch, ``await handle(records)``, then ack it. ``handle`` must
        return only once the batch's effects are durable (it retries until then); if it
        raises, the batch is not acked (it is read again after a restart or rebalance),
        and anything but a cancellation crashes the app, visibly."""
        unacked = self._consumer_now()._unacked_messages
        while True:
            raise_if_cancelled()  # a stop that a library swallowed during the last batch
            records = await self.inbox.get()
            token = _InFlight(len(records))
            unacked.add(token)  # faust's wait_empty waits for it (a weak set: held here)
            try:
                await handle(records)
                self.ack(records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never dies silently: the app stops with the error
                log.exception("scoring a batch of %d records failed", len(records))
                await self._app.crash(exc)
                return
            finally:
                token.acked = True
                unacked.discard(token)

    def ack(self, records: Sequence[Record]) -> int:
        """faust's ``Consumer.ack`` for every record of a batch; how many were new."""
        from faust.types import TP
        from faust.types.tuples import ack_lock
        from mode.utils.futures import notify

        consumer = self._consumer_now()
        offsets: dict[tuple[str, int], list[int]] = {}
        for rec in records:
            tp = (rec.topic, rec.partition)
            got = offsets.get(tp)
            if got is None:
                offsets[tp] = [rec.offset]
            else:
                got.append(rec.offset)
        acks_enabled_for = self._app.topics.acks_enabled_for
        added = 0
        with ack_lock:
            for (topic, partition), tp_offsets in offsets.items():
                if not acks_enabled_for(topic):
                    continue
                tp = TP(topic, partition)
                committed = consumer._committed_offset[tp]
                index = consumer._acked_index[tp]
                new = [
                    o
                    for o in tp_offsets
                    if (committed is None or o >= committed) and o not in index
                ]
                if new:
                    index.update(new)
                    consumer._acked[tp].extend(new)
                    added += len(new)
            consumer._n_acked += added
        notify(consumer._waiting_for_ack)
        return added

    def _consumer_now(self) -> Any:
        if self._consumer is None:  # attach() runs when faust builds its consumer
            self._consumer = self._app.consumer
            if self._consumer._drain_messages != self._drain:
                raise FaustIncompatible("stream_app.faustx.intake: the consumer was not attached")
        return self._consumer

    # -- the fetcher side --------------------------------------------------------------

    async def _drain(self, fetcher: Any) -> None:
        """``Consumer._drain_messages``, a fetch at a time (see the module)."""
        consumer = self._consumer
        consumer_should_stop = consumer._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                consumer.diag.set_flag(FETCHING)
                await consumer.sleep(0)  # (faust: getmany may loop without yielding)
                if consumer.should_stop:
                    continue
                records, active = await consumer._wait_next_records(1.0)
                if records is None or consumer.should_stop:
                    continue
                if not consumer.flow_active:  # as faust's getmany: back to committed
                    await self._seek_back(consumer)
                    continue
                await self._deliver(consumer, records, active)
                consumer.diag.unset_flag(FETCHING)
        except consumer.consumer_stopped_errors:
            if self._app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self._app.should_stop:
                log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            consumer.diag.unset_flag(FETCHING)

    async def _seek_back(self, consumer: Any) -> None:
        try:
            await consumer.perform_seek()
        except Exception as exc:  # noqa: BLE001 - as faust's getmany: logged, goes on
            log.warning("exception performing seek when flow not active %r", exc)

    async def _deliver(self, consumer: Any, records: Any, active: Any) -> None:
        """One fetch: the intake's records into the inbox at once (or none of them, when
        a rebalance started meanwhile); other topics' messages to faust's conductor."""
        generation = self._app.consumer_generation_id
        buffered = consumer._buffered_partitions
        read_offset = consumer._read_offset
        mine: list[Record] = []
        last: dict[Any, int] = {}
        for tp, raw in records.items():
            if not (active is None or tp in active or tp in buffered):
                continue
            if tp.topic not in self.topics:
                await self._deliver_each(consumer, tp, raw, generation)
                continue
            r_offset = read_offset[tp]
            kept = await self._convert(consumer, tp, raw, r_offset, mine)
            if kept is not None:
                last[tp] = kept
        if mine and not await self._put(consumer, mine, generation):
            return  # dropped: faust seeks back to the committed offsets
        for tp, offset in last.items():
            read_offset[tp] = offset
        await self._maybe_commit(consumer)

    async def _convert(
        self, consumer: Any, tp: Any, raw: Sequence[Any], r_offset: int | None, out: list[Record]
    ) -> int | None:
        """Append ``raw``'s records as :class:`Record`s to ``out`` with faust's rules;
        the last offset taken, or None."""
        topic, acks = tp.topic, self._app.topics.acks_enabled_for(tp.topic)
        append = out.append
        for rec in raw:
            offset = rec.offset
            if r_offset is not None and offset < r_offset:
                continue  # read already (faust drops it)
            if r_offset and offset - r_offset > 1 and acks:  # a gap: acked in faust's books
                await consumer._add_gap(tp, r_offset + 1, offset)
            ts, headers = rec.timestamp, rec.headers
            append(
                Record(
                    topic,
                    rec.partition,
                    offset,
                    rec.key,
                    rec.value,
                    None if ts is None else ts / 1000.0,
                    headers_of(headers) if headers else (),
                )
            )
            r_offset = offset
        return r_offset

    async def _put(self, consumer: Any, mine: list[Record], generation: int) -> bool:
        """Into the inbox, unless a rebalance began: then False (dropped)."""
        if not consumer.flow_active or generation != self._app.consumer_generation_id:
            return False
        if self.inbox.has_room():
            self.inbox.put_nowait(mine)
            return True
        put: list[bool] = []

        async def wait_for_room() -> None:
            put.append(await self.inbox.put(mine))

        # as faust delivers: abandoned when the flow stops (a rebalance) meanwhile
        await consumer.wait_first(wait_for_room(), consumer.suspend_flow.wait())
        return bool(put and put[0]) and consumer.flow_active

    async def _deliver_each(
        self, consumer: Any, tp: Any, raw: Sequence[Any], generation: int
    ) -> None:
        """faust's own path for a topic not of this intake: message by message."""
        read_offset = consumer._read_offset
        for rec in raw:
            if not consumer.flow_active or generation != self._app.consumer_generation_id:
                return  # as faust's getmany: the rest of the fetch is dropped
            r_offset = read_offset[tp]
            if r_offset is not None and rec.offset < r_offset:
                continue
            message = consumer._to_message(tp, rec)
            await consumer.wait_first(consumer.callback(message), consumer.suspend_flow.wait())
            read_offset[tp] = rec.offset

    async def _maybe_commit(self, consumer: Any) -> None:
        every = consumer._commit_every
        if every is not None and consumer._n_acked >= every:
            consumer._n_acked = 0
            await consumer.commit()

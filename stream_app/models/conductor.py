"""Which models a worker scores, and how each batch and sweep goes through them.

The :class:`Conductor` follows the registry (polled every :data:`POLL_S`, and read again
whenever a partition is assigned or a record shows a later epoch). It keeps one lane
(:mod:`stream_app.models.lanes`) per model scored:

* the model in force: every batch, published;
* the shadow, silently, on the partitions where it is **engaged**. A shadow built from
  current state, and the previous model kept after a switch, are engaged everywhere at
  once. A replayed shadow is engaged partition by partition: while its replay (its own
  consumer group, :mod:`stream_app.models.replay`) is behind the worker group there,
  the replay alone scores it; once the replay has processed everything before the
  group's next offset on both source partitions, the group's batches score it too
  (:meth:`Conductor.engage`), and the replay stops when every partition is engaged.

On a new epoch (a promotion or rollback) the worker switches each partition it owns
(:func:`stream_app.models.switch.switch_partitions`) before scoring anything there, and
from then on publishes with the new model in force. The silent lane runs first, so a
record written under a later epoch (the registry moved on and this worker has not seen
it yet) stops the batch before anything is published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from stream_app.messages import Record, Topics
from stream_app.models.lanes import Lane, StaleEpoch, build_lane, derivation_for
from stream_app.models.registry import ModelRegistry, ModelSlot, RegistryState
from stream_app.models.replay import ReplayConsumer
from stream_app.models.switch import SwitchPlan, switch_partitions
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.state import RedisClient
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.ports import Consumer, Publisher
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.scorer import ScoringOptions
from stream_app.worker.stats import BatchStats, SweepStats

log = logging.getLogger("stream_app.models")

#: How often a worker reads the registry (how soon it notices a new shadow or a switch).
POLL_S = 0.5


def needs_replay(state: RegistryState) -> bool:
    """The shadow is a candidate built by replaying the input."""
    s = state.shadow
    return s is not None and s.mode == "replay" and s.id > state.active.id


class Conductor:
    """The models one worker scores (see the module docstring)."""

    def __init__(
        self,
        *,
        settings: Settings,
        topics: Topics,
        client: RedisClient,
        registry: ModelRegistry,
        publisher: Publisher,
        consumer: Consumer,
        state: RegistryState,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.client = client
        self.registry = registry
        self.publisher = publisher
        self.consumer = consumer
        self.options = ScoringOptions.from_settings(settings)
        self.progress = PartitionProgress(topics)
        self.state = state
        self.epoch = state.epoch
        self.lanes: dict[int, Lane] = {}
        #: Partitions where the shadow is scored with the batches (None: not read yet).
        self.engaged: set[int] | None = None
        #: Partitions of this worker known switched to ``epoch``.
        self.cut: set[int] = set()
        self.replay: ReplayConsumer | None = None
        self._reconcile_lanes(state)

    # ------------------------------------------------------------------ lanes

    @property
    def active(self) -> Lane:
        return self.lanes[self.state.active.id]

    @property
    def shadow(self) -> Lane | None:
        s = self.state.shadow
        return None if s is None else self.lanes[s.id]

    def _lane(self, slot: ModelSlot, *, replay: bool = False) -> Lane:
        return build_lane(
            slot,
            client=self.client,
            prefix=self.settings.key_prefix,
            topics=self.topics,
            publisher=self.publisher,
            options=self.options,
            progress=None if replay else self.progress,
            epoch=None if replay else (lambda: self.epoch),
            derivation=derivation_for(slot, self.lanes, self.client, self.settings.key_prefix),
            replay=replay,
            suppression_secret=self.settings.suppression_secret.encode(),
        )

    def _reconcile_lanes(self, state: RegistryState) -> None:
        wanted = [state.active] + ([state.shadow] if state.shadow is not None else [])
        for slot in wanted:  # the model in force first: a shadow may be derived from it
            if slot.id not in self.lanes:
                self.lanes[slot.id] = self._lane(slot)
                log.info("scoring %s", slot.label)
        for slot_id in set(self.lanes) - {s.id for s in wanted}:
            log.info("no longer scoring %s", self.lanes.pop(slot_id).slot.label)
        for lane in self.lanes.values():
            lane.gate.is_open = lane.slot.id == state.active.id

    # ------------------------------------------------------------------ registry

    async def refresh(self, *, force: bool = False) -> None:
        """Read the registry (its ``rev`` only, unless it moved or ``force``) and follow it;
        the worker calls it every :data:`POLL_S`."""
        rev = await self.client.hget(self.registry.keys.registry(), "rev")
        if force or rev is None or int(rev) != self.state.rev:
            state = await self.registry.read()
            if state is not None and state.rev != self.state.rev:
                self._follow(state)
        await self._engage_idle()

    def _follow(self, state: RegistryState) -> None:
        old = self.state
        self.state = state
        if state.epoch != self.epoch:
            log.info("registry epoch %d: %s is the model in force", state.epoch, state.active.label)
            self.epoch = state.epoch
            self.cut = set()
        self._reconcile_lanes(state)
        if old.shadow != state.shadow:
            self.engaged = None  # read again before the shadow scores anything

    async def ensure(self, partitions: Iterable[int]) -> None:
        """Switch the given owned partitions to the current epoch, where not done yet."""
        missing = set(partitions) - self.cut
        if not missing:
            return
        if await self.registry.epoch() != self.epoch:
            await self.refresh(force=True)
            missing = set(partitions) - self.cut
        if self.epoch > 0:
            done = await self.registry.cutover()
            todo = frozenset(p for p in missing if done.get(p, -1) < self.epoch)
            if todo:
                plan = SwitchPlan(
                    todo,
                    self.epoch,
                    self.state.switched_at_ms or 0.0,
                    self.active,
                    self.shadow,
                    self.topics,
                )
                await switch_partitions(plan, self.registry)
        self.cut |= missing

    # ------------------------------------------------------------------ engagement

    async def _engaged(self) -> set[int]:
        """Where the shadow is engaged, as the registry says (read once per shadow)."""
        if self.engaged is None:
            shadow = self.state.shadow
            if shadow is None:
                self.engaged = set()
            else:
                self.engaged = await self.registry.engaged(shadow.id)
        return self.engaged

    async def _engage_idle(self) -> None:
        """Engage the shadow where it is ready (others' engagements are read too)."""
        state = self.state
        if state.shadow is None:
            return
        self.engaged = None
        engaged = await self._engaged()
        if needs_replay(state) and len(engaged) < self.topics.input_partitions:
            owned = {p for t, p in self.consumer.assignment() if t == self.topics.input}
            await self.engage(owned - engaged, {})

    async def engage(self, partitions: set[int], first: dict[tuple[str, int], int]) -> None:
        """Engage the shadow on those of ``partitions`` its replay has caught up with.

        Caught up on a source partition means: the replay has processed every offset
        before the first one of the batch about to be scored there (``first``), or, where
        the batch has none, before the partition's highwater (so whatever the worker group
        scores there from now on, redeliveries included, the shadow has everything before
        it). A partition whose highwater is not known yet waits.
        """
        shadow = self.state.shadow
        if not partitions or shadow is None:
            return
        done = await self.registry.replay_progress(shadow.id)
        ready = []
        for p in sorted(partitions):
            ok = True
            for topic in self.topics.sources:
                nxt = first.get((topic, p))
                if nxt is None:
                    nxt = self.consumer.highwater(topic, p)
                ok &= nxt is not None and done.get((topic, p), -1) >= nxt - 1
            if ok:
                ready.append(p)
        if ready:
            await self.registry.engage(shadow.id, ready)
            self.engaged = await self._engaged() | set(ready)
            log.info("%s scored with every batch on partitions %s", shadow.label, ready)

    def replay_wanted(self) -> Lane | None:
        """The shadow whose replay should run now (None: no replay)."""
        engaged = self.engaged
        if not needs_replay(self.state) or engaged is None:
            return None
        if len(engaged) >= self.topics.input_partitions:
            return None
        return self.shadow

    # ------------------------------------------------------------------ work

    async def process(self, records: Sequence[Record]) -> BatchStats:
        """Score a batch under every model scored here; the stats of the model in force."""
        partitions = {r.partition for r in records}
        for _ in range(3):
            await self.ensure(partitions)
            try:
                shadow = self.shadow
                if shadow is not None:
                    engaged = await self._engaged()
                    if needs_replay(self.state) and not partitions <= engaged:
                        first: dict[tuple[str, int], int] = {}
                        for r in records:
                            tp = (r.topic, r.partition)
                            first[tp] = min(r.offset, first.get(tp, r.offset))
                        await self.engage(partitions - engaged, first)
                        engaged = await self._engaged()
                    mine = [r for r in records if r.partition in engaged]
                    if mine:
                        await shadow.scorer.process(mine)
                return await self.active.scorer.process(records)
            except StaleEpoch:
                log.info("a record is newer than registry epoch %d; reading it again", self.epoch)
                await self.refresh(force=True)
        raise StaleEpoch("the registry epoch kept moving during one batch")

    async def sweep(self, partition: int, until_ms: float, *, now_ms: float) -> SweepStats:
        """Fire the crossings due on ``partition`` under every model scored there."""
        await self.ensure({partition})
        shadow = self.shadow
        if shadow is not None and partition in await self._engaged():
            await shadow.scorer.sweep_partition(partition, until_ms, now_ms=now_ms)
        return await self.active.scorer.sweep_partition(partition, until_ms, now_ms=now_ms)

    def revoked(self, partitions: Iterable[int]) -> None:
        """Forget what this worker knew of partitions moved away."""
        moved = set(partitions)
        self.progress.revoke(moved)
        for lane in self.lanes.values():
            lane.scorer.revoked(moved)  # (its watermarks and due hints)
        self.cut -= moved

    async def sweep_limits(self, owned: Sequence[int], *, now_ms: float) -> dict[int, float | None]:
        """Send and save the owned partitions' event-time progress (the lane in force
        does); how far each one's sweep may fire, under every model scored here."""
        return await self.active.scorer.sweep_limits(self.consumer, owned, now_ms=now_ms)

    def watermark_gauges(
        self, metrics: WorkerMetrics, limits: Mapping[int, float | None], *, now_ms: float
    ) -> None:
        """Set the per-partition watermark gauges (of the lane in force)."""
        self.active.scorer.watermark_gauges(metrics, limits, now_ms=now_ms)

    async def dead_letter(self, failed: Sequence[tuple[Record, str]], reason: str) -> None:
        """Dead-letter records that failed on their own, through the model in force."""
        await self.active.scorer.dead_letter(failed, reason)

    def namespaces(self) -> list[Keys]:
        """The keys of every model scored here."""
        return [lane.store.keys for lane in self.lanes.values()]

    async def run_replays(self, transient: Callable[[BaseException], str | None]) -> None:
        """Run the shadow's replay while one is wanted (a long-running task); failures
        ``transient`` names a cause of are waited out with backoff, others logged too."""
        delay = 0.5
        try:
            while True:
                lane = self.replay_wanted()
                if self.replay is not None and (lane is None or lane.slot != self.replay.lane.slot):
                    await self.replay.stop()
                    log.info("replay of %s stopped", self.replay.lane.slot.label)
                    self.replay = None
                if lane is None:
                    await asyncio.sleep(POLL_S)  # nothing to replay: look again later
                    continue
                if self.replay is None:
                    replay_lane = self._lane(lane.slot, replay=True)
                    self.replay = ReplayConsumer(
                        self.settings, self.topics, replay_lane, self.registry
                    )
                try:
                    await self.replay.step()
                    delay = 0.5
                    continue
                except Exception as exc:
                    if transient(exc) is not None:
                        log.warning("replay waits %.1fs: %s: %s", delay, type(exc).__name__, exc)
                    else:
                        log.exception("replay failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)  # back-off while Kafka or Redis is away
                delay = min(delay * 2, self.settings.retry_max_backoff_s)
        finally:
            if self.replay is not None:
                await self.replay.stop()
                self.replay = None

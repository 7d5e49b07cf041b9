"""A **lane**: one model scored by a worker, with its own keys, store, scorer and gate.

A worker scores the model in force in one lane, and the shadow (when there is one) in
a second lane fed the same batches: the same code (:class:`stream_app.worker.scorer.Scorer`)
over another key namespace, behind a :class:`Gate` that publishes nothing while the
lane is not the one in force (no changes, no dead letters, no forwards: the lane in
force does those). A shadow's **replay** runs a third lane over the same namespace, fed
by its own consumer group from the earliest retained offset
(:mod:`stream_app.models.replay`).

:class:`LaneStore` is the lane's :class:`~stream_app.store.state.StateStore`, with:

* the **epoch mark**: every record a worker's lane writes carries ``m=<epoch>`` among its
  marks, the registry's epoch the worker scored it under. A switch (promotion or
  rollback) to epoch E publishes, for each customer, the changes from its standing in
  the old model to its standing in the new one, and marks the new model's record
  ``m=E``: a customer whose record in force has ``m < E`` is not switched yet
  (:mod:`stream_app.models.switch`). A lane that reads a record marked with an epoch
  later than the worker's knows the registry moved on (:class:`StaleEpoch`);
* **derivation**, for a shadow built from current state: a customer the shadow has no
  record of is read from the model it was derived from, through
  :func:`scoring.migrate.derive` (the record is written at its next change);
* for the replay lane, **claimed** records: once a worker's lane wrote a customer of the
  shadow (its record has an epoch mark), the replay leaves that customer alone, so
  after a switch nothing but the worker group's lanes writes (and publishes) it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from scoring import Model, ScoringError, decode_state, encode_state
from scoring.migrate import derive
from stream_app.errors import StreamAppError
from stream_app.messages import OutMessage, Topics, expected_partition
from stream_app.models.registry import ModelSlot
from stream_app.store.keys import Keys
from stream_app.store.lifecycle import LifecycleStore
from stream_app.store.progress import ProgressStore
from stream_app.store.readstore import ReadStore
from stream_app.store.records import RECORD_FORMAT, Command, CustomerRecord, Write
from stream_app.store.state import RedisClient, StateStore
from stream_app.worker.effects import Effects
from stream_app.worker.ports import NpsCounts, Publisher
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.readside import ReadSide
from stream_app.worker.scorer import Scorer, ScoringOptions

#: The mark that holds the registry epoch a record was written under.
EPOCH_MARK = "m"
#: An offset above any real one: a claimed record looks as if it had applied everything.
CLAIMED = 2**62


class StaleEpoch(StreamAppError):
    """A record was written under a later registry epoch than this worker knows."""

    retry_cause = "conflict"  # read the registry again and retry (stream_app.worker.errors)


def epoch_of(record: CustomerRecord) -> int:
    """The epoch a record was written under (-1: not by a worker's lane, or never)."""
    return record.marks.get(EPOCH_MARK, -1)


class Gate:
    """A :class:`~stream_app.worker.ports.Publisher` that passes messages on only while open."""

    def __init__(self, publisher: Publisher, *, is_open: bool = False) -> None:
        self.publisher = publisher
        self.is_open = is_open

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        if self.is_open and messages:
            await self.publisher.publish(messages)


class NullPublisher:
    """Publishes nothing (a replay's lane)."""

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Derivation:
    """Where a shadow built from current state reads the customers it has no record of."""

    source: StateStore
    source_model: Model
    model: Model


class LaneStore(StateStore):
    """A model's records, with the epoch mark, derivation and claims (module docstring)."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        *,
        epoch: Callable[[], int] | None = None,
        derivation: Derivation | None = None,
        claimed_by_workers: Callable[[str], int] | None = None,
        secret: bytes | None = None,
        record_format: int = RECORD_FORMAT,
    ) -> None:
        super().__init__(client, keys, secret=secret, record_format=record_format)
        self.epoch = epoch
        self.derivation = derivation
        #: For a replay: the owner partition of a customer (its marks' source names).
        self.owner = claimed_by_workers

    async def load(self, customer_ids: Sequence[str]) -> dict[str, CustomerRecord]:
        records = await super().load(customer_ids)
        if self.derivation is not None:
            missing = [cid for cid, r in records.items() if r.state is None]
            if missing:
                records.update(await self._derived(missing))
        if self.epoch is not None:
            epoch = self.epoch()
            if any(epoch_of(r) > epoch for r in records.values()):
                raise StaleEpoch(f"a record was written under a registry epoch after {epoch}")
        if self.owner is not None:
            for cid, r in records.items():
                if epoch_of(r) >= 0:
                    p = self.owner(cid)
                    records[cid] = dataclasses.replace(
                        r, marks={f"i{p}": CLAIMED, f"r{p}": CLAIMED}
                    )
        return records

    async def _derived(self, customer_ids: Sequence[str]) -> dict[str, CustomerRecord]:
        d = self.derivation
        assert d is not None
        out: dict[str, CustomerRecord] = {}
        for cid, src in (await d.source.load(customer_ids)).items():
            if src.state is None or src.fault is not None:
                continue  # (an unreadable record is the batch's to dead-letter)
            try:
                state = derive(decode_state(src.state, d.source_model), d.source_model, d.model)
            except ScoringError:
                continue
            out[cid] = CustomerRecord(0, src.marks, encode_state(state), src.explain)
        return out

    async def commit(
        self,
        writes: Sequence[Write],
        *,
        nps: NpsCounts | None = None,
        index: Sequence[Command] = (),
    ) -> list[str]:
        if self.epoch is not None:
            epoch = self.epoch()
            writes = [
                w
                if w.marks.get(EPOCH_MARK) == epoch  # (a batch carries the marks it read)
                else dataclasses.replace(w, marks={**w.marks, EPOCH_MARK: epoch})
                for w in writes
            ]
        return await super().commit(writes, nps=nps, index=index)


@dataclass
class Lane:
    """One model scored by this worker."""

    slot: ModelSlot
    store: LaneStore
    readstore: ReadStore
    scorer: Scorer
    gate: Gate
    #: What a switch writes with: the lane's read-side indexes and effects (its gate).
    readside: ReadSide
    effects: Effects
    #: The lane's erased and merged customers (None: erase and merge are not handled).
    lifecycle: LifecycleStore | None = None

    @property
    def model(self) -> Model:
        return self.slot.model


def build_lane(
    slot: ModelSlot,
    *,
    client: RedisClient,
    prefix: str,
    topics: Topics,
    publisher: Publisher,
    options: ScoringOptions,
    progress: PartitionProgress | None,
    epoch: Callable[[], int] | None,
    derivation: Derivation | None = None,
    replay: bool = False,
    suppression_secret: bytes | None = None,
) -> Lane:
    """A lane for ``slot`` (``replay``: the lane of its replay, which never publishes).
    With ``suppression_secret`` the lane handles erase and merge requests in its own
    namespace; a lane in a worker's group also keeps its event-time progress there."""
    keys = slot.keys(prefix)
    partitions = topics.input_partitions
    store = LaneStore(
        client,
        keys,
        epoch=epoch,
        derivation=derivation,
        claimed_by_workers=(lambda cid: expected_partition(cid, partitions)) if replay else None,
        secret=suppression_secret,
        record_format=options.record_format,
    )
    readstore = ReadStore(client, keys, slot.model)
    gate = Gate(NullPublisher() if replay else publisher)
    lifecycle = None
    if suppression_secret is not None:
        segments = [r.name for r in slot.model.segments]
        lifecycle = LifecycleStore(client, keys, secret=suppression_secret, segments=segments)
    scorer = Scorer(
        model=slot.model,
        topics=topics,
        store=store,
        publisher=gate,
        indexes=readstore,
        options=options,
        progress=progress,
        progress_store=None if replay else ProgressStore(client, keys),
        lifecycle_store=lifecycle,
    )
    effects = Effects(store, gate, scorer.hints, due_index=store)
    readside = ReadSide(slot.model, readstore)
    return Lane(slot, store, readstore, scorer, gate, readside, effects, lifecycle)


def derivation_for(
    slot: ModelSlot, lanes: Mapping[int, Lane], client: RedisClient, prefix: str
) -> Derivation | None:
    """The derivation of a shadow built from current state (None for a replayed one, or
    once the model it was derived from is no longer scored)."""
    if slot.mode != "from-current" or not slot.source:
        return None
    source = lanes.get(slot.source)
    if source is None:
        return None
    return Derivation(StateStore(client, source.slot.keys(prefix)), source.model, slot.model)

"""Switching a worker's partitions to the model in force at a new epoch.

A promotion (or a rollback) makes the registry's shadow the model in force at epoch E,
at the instant ``switched_at``. Each worker then switches the customers of the input
partitions it owns, before it scores anything else there:

1. it lists them (``SCAN`` over both models' records, kept if their owner partition is
   being switched) and reads both records, chunk by chunk;
2. for each customer whose record in force is not marked with epoch E yet, it computes
   the changes from its standing under the previous model to its standing under the
   model in force (:func:`scoring.migrate.switch_changes`: cause ``model``, at
   ``switched_at``, ids from the customer, the model's name and version and the move);
3. it publishes them, waits for the acks, then writes the record in force (unchanged
   state, marked ``m=E``), fenced: a retry after a crash computes the same changes from
   the same records, so it republishes the same ids with the same contents, and skips
   the customers already marked;
4. it marks each partition switched in the registry (``cutover``), with the number of
   changes it published.

Nothing else of a partition is scored while it is being switched (the worker holds its
one-at-a-time lock), so no batch is scored partly under one model and partly under the
other: every batch is published by one model, and a customer's switch sits between the
last change of the old model and the first of the new one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass

from scoring import (
    Change,
    CustomerState,
    decode_state,
    encode_state,
    new_state,
    next_crossing,
)
from scoring.migrate import switch_changes
from stream_app.errors import StreamAppError
from stream_app.messages import Topics, expected_partition
from stream_app.models.lanes import Lane, epoch_of
from stream_app.models.registry import ModelRegistry
from stream_app.store.records import CustomerRecord, Membership, Write
from stream_app.worker.effects import Outcome, change_messages

log = logging.getLogger("stream_app.models")


class SwitchConflicts(StreamAppError):
    """Fenced writes of a switch kept losing races (another worker writes the customers)."""

    retry_cause = "conflict"  # retried, like a batch's (stream_app.worker.errors)


#: Customers read, compared and written per round trip.
CHUNK = 500
#: Rounds for customers whose fenced write lost a race, per chunk.
ROUNDS = 5


@dataclass(frozen=True, slots=True)
class SwitchPlan:
    """What one worker switches: its partitions, to ``epoch``, at ``at_ms``."""

    partitions: frozenset[int]
    epoch: int
    at_ms: float
    new: Lane
    old: Lane | None
    topics: Topics


async def _customers(plan: SwitchPlan) -> AsyncIterator[list[str]]:
    """Chunks of the customers of the switched partitions, from both models' records."""
    n = plan.topics.input_partitions
    lanes = [plan.new] + ([plan.old] if plan.old is not None else [])
    for lane in lanes:
        store = lane.store
        chunk: list[str] = []
        async for key in store.client.scan_iter(match=store.keys.state_pattern(), count=CHUNK):
            cid = store.keys.customer_of(key.decode())
            if expected_partition(cid, n) in plan.partitions:
                chunk.append(cid)
                if len(chunk) >= CHUNK:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


def _state(record: CustomerRecord, lane: Lane) -> CustomerState | None:
    return None if record.state is None else decode_state(record.state, lane.model)


async def _switch_chunk(plan: SwitchPlan, ids: Sequence[str], published: Counter[int]) -> int:
    """Switch the customers ``ids`` (those not switched yet); how many were switched."""
    new, old, n = plan.new, plan.old, plan.topics.input_partitions
    readside = new.readside
    pending = list(ids)
    switched = 0
    for _ in range(ROUNDS):
        records = await new.store.load(pending)
        olds = await old.store.load(pending) if old is not None else {}
        writes: list[Write] = []
        changes: list[Change] = []
        members: dict[str, Membership] = {}
        for cid in pending:
            record = records[cid]
            if epoch_of(record) >= plan.epoch:
                continue  # switched already
            if record.fault is not None or (old is not None and olds[cid].fault is not None):
                log.warning("customer %r not switched: its record cannot be read", cid)
                continue
            after = _state(record, new)
            before = _state(olds[cid], old) if old is not None else None
            moved = switch_changes(
                cid,
                old_state=before,
                old_model=old.model if old is not None else new.model,
                new_state=after,
                new_model=new.model,
                at_ms=plan.at_ms,
            )
            changes.extend(moved)
            published[expected_partition(cid, n)] += len(moved)
            state = new_state() if after is None else after
            fresh = record.version == 0
            writes.append(
                Write(
                    cid,
                    record.version,
                    record.marks,
                    record.state if record.state is not None else encode_state(state),
                    due_partition=expected_partition(cid, n),
                    due_at_ms=next_crossing(state, new.model) if fresh else None,
                    explain=record.explain,
                    tier_move=readside.tier_move(None if fresh else state, state),
                    read_token=record.fence,
                )
            )
            members[cid] = readside.membership(state)
        outcome = Outcome(
            change_messages(plan.topics.output, changes),
            writes,
            index=readside.commands(members, changes, plan.at_ms),
        )
        lost = await new.effects.apply(outcome)
        switched += len(writes) - len(lost)
        if not lost:
            return switched
        pending = sorted(lost)
    raise SwitchConflicts(f"switching {len(pending)} customers kept losing races")


async def switch_partitions(plan: SwitchPlan, registry: ModelRegistry) -> int:
    """Switch every customer of ``plan.partitions``; the number of changes published."""
    published: Counter[int] = Counter()
    customers = 0
    async for chunk in _customers(plan):
        customers += await _switch_chunk(plan, chunk, published)
    for p in sorted(plan.partitions):
        await registry.mark_cutover(p, plan.epoch, published[p])
    total = sum(published.values())
    log.info(
        "switched partitions %s to %s (epoch %d): %d customers, %d model changes published",
        sorted(plan.partitions),
        plan.new.slot.label,
        plan.epoch,
        customers,
        total,
    )
    return total


def owned_partitions(assignment: Collection[tuple[str, int]], topics: Topics) -> set[int]:
    """The input partitions in a consumer assignment."""
    return {p for t, p in assignment if t == topics.input}

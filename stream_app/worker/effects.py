"""The one way a batch or a decay sweep makes its outcome durable, in this order:

1. **publish** dead letters, forwards and segment changes, and wait for the broker's
   acknowledgements;
2. **commit**, in one Redis pipeline: NPS counters (idempotent per source offset), the
   read-side index commands, the due-index entries (``ZADD LT``), then every record's
   fenced write; the customers whose write lost a race come back;
3. for a sweep, **reschedule** the due entries it read (compare-and-set), except those
   of customers whose write lost;
4. remember in the **due hints** what the due index now holds for each customer, and
   for which record (its fence token: :mod:`stream_app.worker.duehints`).

Changes are published before the state that implies them is written, so a crash in
between re-publishes them (same ids) instead of losing them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from scoring import Change
from stream_app import jsonutil
from stream_app.contracts import cloudevent
from stream_app.errors import StreamAppError
from stream_app.messages import CLOUDEVENT_HEADERS, OutMessage
from stream_app.store.records import Command, Write
from stream_app.worker.duehints import DueHints
from stream_app.worker.ports import DueIndex, NpsCounts, Publisher, RecordStore


def change_messages(topic: str, changes: Iterable[Change]) -> list[OutMessage]:
    """Each change as its CloudEvent on the output topic ``topic``, keyed by customer."""
    return [
        OutMessage(
            topic,
            change.customer_id.encode(),
            jsonutil.dumps_str_keys(cloudevent(change)),  # (a CloudEvent's keys are str)
            CLOUDEVENT_HEADERS,
        )
        for change in changes
    ]


@dataclass(frozen=True, slots=True)
class Reschedule:
    """A sweep's due entries: customer -> (time it was read at, next crossing or None),
    and customer -> the fence token its record has once this round's write (if any) won."""

    partition: int
    entries: Mapping[str, tuple[float, float | None]]
    versions: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one round of a batch, or one sweep, makes durable."""

    messages: Sequence[OutMessage]
    writes: Sequence[Write]
    nps: NpsCounts | None = None
    index: Sequence[Command] = ()
    #: None: a batch, whose writes carry their due times; else a sweep's due entries.
    reschedule: Reschedule | None = None


class Effects:
    """Publish, commit, reschedule, remember: see the module docstring."""

    def __init__(
        self,
        store: RecordStore,
        publisher: Publisher,
        hints: DueHints,
        *,
        due_index: DueIndex | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.hints = hints
        self.due_index = due_index

    async def apply(self, outcome: Outcome, lap: Callable[[str], None] | None = None) -> set[str]:
        """Make ``outcome`` durable; the customers whose fenced write lost a race.

        ``lap``, if given, is called with ``"publish"`` once the broker acknowledged
        and with ``"write"`` once Redis did.
        """
        if outcome.messages:
            await self.publisher.publish(outcome.messages)
        if lap is not None:
            lap("publish")
        lost = set(await self.store.commit(outcome.writes, nps=outcome.nps, index=outcome.index))
        if outcome.reschedule is None:
            remember = self.hints.set
            for w in outcome.writes:  # (its due time was written with ZADD LT, lost or not)
                cid = w.customer_id
                remember(cid, w.due_at_ms, None if cid in lost else w.token)
        else:
            await self._reschedule(outcome.reschedule, lost)
        if lap is not None:
            lap("write")
        return lost

    async def _reschedule(self, plan: Reschedule, lost: set[str]) -> None:
        if self.due_index is None:
            raise StreamAppError("a sweep's outcome needs Effects built with a due index")
        entries = dict(plan.entries)
        for cid in lost:  # someone else wrote this customer: leave its entry for the next tick
            entries.pop(cid, None)
            self.hints.discard(cid)
        await self.due_index.reschedule(plan.partition, entries)
        for cid, (_, at) in entries.items():  # exact, for the record as it now stands
            self.hints.set(cid, at, plan.versions[cid])

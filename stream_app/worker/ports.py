"""What the worker needs from the outside world, as Protocols.

The batch processor and the decay sweep are handed objects that fit these; the
real ones are :class:`stream_app.store.state.StateStore`,
:class:`stream_app.store.readstore.ReadStore` and the publishers over
aiokafka (:mod:`stream_app.kafka.io`) and over faust's producer; tests hand in
in-memory ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from scoring import Change
from stream_app.messages import OutMessage
from stream_app.store.records import Command, CustomerRecord, LifecycleStatus, Membership, Write

#: NPS responses to count, per source (topic, partition): (offset, counter field) pairs.
NpsCounts = Mapping[tuple[str, int], Sequence[tuple[int, str]]]


class RecordStore(Protocol):
    """Customer records and their fenced writes: what a batch needs (Redis, in production)."""

    async def load(self, customer_ids: Sequence[str], /) -> dict[str, CustomerRecord]:
        """The records of these customers (an empty record for an unknown one)."""
        ...

    async def commit(
        self,
        writes: Sequence[Write],
        /,
        *,
        nps: NpsCounts | None = None,
        index: Sequence[Command] = (),
    ) -> list[str]:
        """Count NPS, run the index commands, schedule, then write fenced; the losers."""
        ...


class DueIndex(Protocol):
    """Each owner partition's due index: customer -> time of its next crossing."""

    async def due(self, partition: int, until_ms: float, limit: int, /) -> list[tuple[str, float]]:
        """Customers of ``partition`` due at or before ``until_ms``, with their due times."""
        ...

    async def reschedule(
        self, partition: int, entries: Mapping[str, tuple[float, float | None]], /
    ) -> None:
        """Move each customer from the time read to its next crossing (None: drop)."""
        ...


class Store(RecordStore, DueIndex, Protocol):
    """Records and the due index: what the decay sweep needs."""


class Indexes(Protocol):
    """The read-side indexes' write commands (segment members, tier moves)."""

    def commands(
        self,
        members: Mapping[str, Membership],
        changes: Sequence[Change],
        now_ms: float,
        *,
        previous: Mapping[str, Membership | None] | None = None,
    ) -> list[Command]:
        """Commands that set these memberships and record these tier moves."""
        ...


class Publisher(Protocol):
    """Sends messages and returns once the broker acknowledged all of them."""

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Send ``messages``; return when every one is acknowledged."""
        ...


class Consumer(Protocol):
    """What the worker reads of its Kafka consumer (faust's, in production)."""

    def assignment(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs assigned to this worker now."""
        ...

    def highwater(self, topic: str, partition: int, /) -> int | None:
        """The offset after the last message of a partition (None: not known yet)."""
        ...

    def committed(self, topic: str, partition: int, /) -> int | None:
        """The group's committed offset of a partition, as read on assignment."""
        ...


class LifecycleStore(Protocol):
    """Suppression list, aliases and the fenced removal of records: what erasing and
    merging customers need (Redis: :class:`stream_app.store.lifecycle.LifecycleStore`)."""

    async def lookup(self, customer_ids: Sequence[str], /) -> dict[str, LifecycleStatus]:
        """Of these customers without a record, the erased and the merged-away ones."""
        ...

    async def alias(self, customer_id: str, /) -> str | None:
        """The customer ``customer_id`` was merged into, while its alias lives."""
        ...

    async def is_suppressed(self, customer_id: str, /) -> bool:
        """True while ``customer_id`` is on the suppression list."""
        ...

    async def erase(
        self, customer_id: str, /, *, fence: str, tier: str, partition: int,
        suppress_ms: int, now_ms: float,
    ) -> list[str] | None:  # fmt: skip
        """Suppress, unindex and delete a customer, fenced by the token of the record read
        (``"*"``: whatever it holds); None: the record changed; else the customers still
        merged into it."""
        ...

    async def drop_aliases(
        self, customer_id: str, merged: Sequence[str], /, *, suppress_ms: int
    ) -> None:
        """Erase the customers merged into an erased one (aliases dropped, suppressed)."""
        ...

    async def forget_merged(self, source: str, into: str, /, *, suppress_ms: int) -> None:
        """``into`` is erased: drop ``source``'s alias to it and suppress ``source``."""
        ...

    async def retire(
        self, customer_id: str, /, *, fence: str, tier: str, partition: int, into: str,
        alias_ms: int, now_ms: float,
    ) -> bool:  # fmt: skip
        """Unindex and delete (fenced) a customer merged into ``into``, leaving an
        alias; False: the record changed."""
        ...

"""The worker's ports over faust: its producer, its consumer, its events."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from stream_app.faustx.compat import FaustIncompatible
from stream_app.messages import OutMessage, Record


class FaustPublisher:
    """A :class:`stream_app.worker.ports.Publisher` over the faust app's producer; waits
    for every ack."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        if not messages:
            return
        producer = self._app.producer
        futures = [
            await producer.send(m.topic, m.key, m.value, m.partition, None, list(m.headers) or None)
            for m in messages
        ]
        await asyncio.gather(*futures)


class FaustConsumer:
    """A :class:`stream_app.worker.ports.Consumer` over the faust app's consumer."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def assignment(self) -> list[tuple[str, int]]:
        return [(tp.topic, tp.partition) for tp in self._app.consumer.assignment()]

    def highwater(self, topic: str, partition: int, /) -> int | None:
        from faust.types import TP

        high = self._app.consumer.highwater(TP(topic, partition))
        return None if high is None else int(high)

    def committed(self, topic: str, partition: int, /) -> int | None:
        """The committed offset faust read when the partition was assigned (0: none).

        faust keeps it in a private mapping; there is no public accessor.
        """
        from faust.types import TP

        committed = getattr(self._app.consumer, "_committed_offset", None)
        if committed is None:
            raise FaustIncompatible("faust's Consumer no longer keeps _committed_offset")
        value = committed.get(TP(topic, partition))
        return None if value is None else int(value)


def records(events: Sequence[Any]) -> list[Record]:
    """faust events as :class:`stream_app.messages.Record`s."""
    return [
        Record(
            e.message.topic,
            e.message.partition,
            e.message.offset,
            e.message.key,
            e.message.value,
            e.message.timestamp,
            headers_of(e.message.headers),
        )
        for e in events
    ]


def headers_of(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """A faust message's headers as (name, value) pairs (faust may give a list or a dict)."""
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, dict) else headers
    return tuple((str(k), bytes(v or b"")) for k, v in items)

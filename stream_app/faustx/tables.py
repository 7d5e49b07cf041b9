"""faust's table manager, without its fixed 1 s wait when the app has no tables.

faust-streaming 0.15.3's ``TableManager.on_start`` (``faust/tables/manager.py``) sleeps
1 s before it finalises the tables (``_update_channels``: changelog channels, then
``_tables_registered``) and starts table recovery; the wait leaves time for tables
created while the app starts. faust's Conductor subscribes the consumer only once the
tables are registered, so those 1 s delay the group join, and a worker's first event,
on every start.

The worker defines no tables (its state is in Redis), so there is nothing to wait for:
:class:`TableManager` registers the (empty) set of tables at once and starts recovery,
in faust's order. Recovery still runs: it is what resumes the assigned partitions after
every rebalance (with no tables it resumes them straight away). An app with tables, or
one that gains a table, keeps faust's own start, sleep included; a table created after
the start is refused by faust ("Too late to add tables"), as it would be after the 1 s.
"""

from __future__ import annotations

from typing import Any

from faust.tables import TableManager as FaustTableManager


class TableManager(FaustTableManager):
    """faust's table manager; with no tables, its start does not sleep (see the module)."""

    async def on_start(self) -> None:
        if len(self):  # tables: faust's own start, 1 s for late registrations included
            await super().on_start()
            return
        if not self.should_stop:
            await self._update_channels()  # no changelogs: sets "tables registered"
            await self.recovery.start()


def settings() -> dict[str, Any]:
    """``faust.App`` keyword settings that use :class:`TableManager`."""
    return {"TableManager": TableManager}

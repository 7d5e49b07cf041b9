"""A track: the sign of one ``metric - bound`` of a state as time passes.

:mod:`scoring.crossing` looks for the first moment a tier bound or a segment
condition changes side. Each such ``metric - bound`` is a :class:`Track`: its
right-limit sign now, and its sign changes, found lazily by its metric's search
(:meth:`scoring.metrics.Metric.changes`): a change is first known as a bracket
``(lo, hi]`` of a :class:`~scoring.roots.Root` and only shrunk as far as the caller
needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

from scoring.roots import Root
from scoring.timeline import Timeline

__all__ = ["ABOVE", "BELOW", "FIXED", "Signs", "Track"]

_INF = math.inf


class Signs(Protocol):
    """What a track asks of its metric (:class:`scoring.metrics.Metric`)."""

    def side(self, line: Timeline, slot: int, bound: float, until: float) -> int:
        """The side of ``bound`` the metric surely keeps from the clock to ``until``."""
        ...

    def changes(self, line: Timeline, track: Track) -> Iterator[Root | float]:
        """The track's sign changes in time order, each a root, or a time passed."""
        ...


class Track:
    """The right-limit sign of ``metric - bound`` from the clock on.

    ``sign`` holds now; the next change lies in ``(lo, hi]`` (``hi`` is infinite
    until a root brackets it, ``lo`` once there is no change left) and is ``hi``
    itself once ``exact``. The search starts on first use, from ``v0``, the value
    at the clock. ``cost`` orders the tracks to search, cheapest first. A track
    without a metric never changes.
    """

    __slots__ = (
        "_items",
        "bound",
        "cost",
        "fresh",
        "hi",
        "line",
        "lo",
        "metric",
        "root",
        "sign",
        "slot",
        "tried",
        "v0",
    )

    def __init__(
        self,
        sign: int,
        line: Timeline | None = None,
        metric: Signs | None = None,
        *,
        cost: int = 0,
        slot: int = -1,
        bound: float = 0.0,
        v0: float = 0.0,
    ) -> None:
        self.sign, self.line, self.metric, self.cost = sign, line, metric, cost
        self.slot, self.bound, self.v0 = slot, bound, v0
        self.fresh = True  # no change taken yet: ``sign`` is the sign at the clock
        self.tried = _INF  # the last time it was checked to be quiet until
        self._items: Iterator[Root | float] | None = None
        self.root: Root | None = None
        self.lo = _INF if line is None else line.clock
        self.hi = _INF

    @property
    def exact(self) -> bool:
        return self.root is not None and self.root.done

    def quiet(self, until: float) -> bool:
        """True if the track, not changed yet, surely does not change until ``until``."""
        assert self.line is not None and self.metric is not None
        return self.metric.side(self.line, self.slot, self.bound, until) != 0

    def search(self) -> None:
        """Narrow the next change: shrink its bracket, or search on for one."""
        root = self.root
        if root is not None:
            root.step()
        else:
            if self._items is None:
                assert self.line is not None and self.metric is not None
                self._items = self.metric.changes(self.line, self)
            item = next(self._items, None)
            if item is None:
                self.lo = _INF
                return
            if not isinstance(item, Root):
                self.lo = max(self.lo, item)
                return
            self.root = root = item
        self._bracket(root)

    def narrow(self, below: float) -> None:
        """Shrink the bracket until it ends at or before ``below``, or is exact."""
        root = self.root
        assert root is not None
        root.shrink(below)
        self._bracket(root)

    def _bracket(self, root: Root) -> None:
        self.lo = math.nextafter(root.b, -_INF) if root.done else max(self.lo, root.a)
        self.hi = root.b

    def take(self) -> Root:
        """Pass the next change (which must be bracketed); returns its root."""
        root = self.root
        assert root is not None
        self.sign, self.root, self.fresh = -root.old, None, False
        self.lo, self.hi = root.b, _INF
        return root


#: Tracks that never change: a metric always above or below its bound, a constant.
ABOVE, BELOW, FIXED = Track(1), Track(-1), Track(0)

"""How pytest-xdist hands the suite's tests to its processes (``-n 3`` in pyproject's addopts).

The suite mostly waits (on workers, the broker, Redis), so three processes on two cores cut
its wall time by more than half (tests/README.md). Each process starts its own Tansu and
redis-server (the session fixtures of ``tests/conftest.py``), so tests of different processes
share nothing. Tests that share a package- or module-scoped fixture must run in the same
process, or the fixture (a started worker, a compiled build) would be set up once per
process. The unit of dispatch (:func:`scope_of`, computed from the test id alone: the
controller collects nothing):

- a test of a package in :data:`PACKAGES` goes with its package: they share its
  package-scoped workers (a new package-scoped fixture means a new entry there);
- a test of a module in :data:`SPREAD` goes alone: those modules share nothing but the
  session's services, and their tests are long (a new long, independent module can go there);
- any other test goes with its module (module-scoped fixtures, and tests that read what an
  earlier test of the module left, such as the dashboard's browser page).

Units under :data:`FIRST` (the compiled build, services, workers) are handed out before the
others, so that no long one starts last and runs alone at the end.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import Producer, WorkerController

#: Packages whose tests share package-scoped fixtures: dispatched as one unit.
PACKAGES = ("tests/integration/api/", "tests/integration/decay/", "tests/integration/pipeline/")
#: Modules whose tests are dispatched one by one (each starts what it needs).
SPREAD = frozenset({"tests/faults/test_faults.py", "tests/integration/test_watermarks.py"})
#: Where the slow tests live, slowest first: their units are handed out before the others
#: (the compiled build first: it computes while the others wait; then the longest single
#: tests, about a minute each, so that none of them starts late).
FIRST = (
    "tests/scoring/test_compiled.py",
    "tests/integration/test_model_replay.py",
    "tests/faults/test_faults.py::test_rebalances",
    "tests/faults/test_faults.py::test_kill",
    "tests/faults/",
    "tests/integration/",
)


def scope_of(nodeid: str) -> str:
    """The unit of dispatch of the test ``nodeid`` (see the module's docstring)."""
    path = nodeid.split("::", 1)[0]
    if path in SPREAD:
        return nodeid
    for package in PACKAGES:
        if path.startswith(package):
            return package
    return path


class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist: untyped
    """xdist's ``loadscope`` with :func:`scope_of` as the scope, slow units first."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        self._ordered = False
        self._first_index: dict[str, int] | None = None

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)

    def _assign_work_unit(self, node: WorkerController) -> None:
        if not self._ordered:  # the first call: the work queue is complete, none handed out
            self._ordered = True
            self.workqueue: OrderedDict[str, dict[str, bool]] = OrderedDict(
                (scope, self.workqueue[scope]) for scope in sorted(self.workqueue, key=self._rank)
            )
        super()._assign_work_unit(node)

    def _rank(self, scope: str) -> tuple[int, int]:
        """Slow units first (in :data:`FIRST`'s order), then collection order."""
        if self._first_index is None:
            self._first_index = {}
            for index, nodeid in enumerate(self.collection or ()):
                self._first_index.setdefault(scope_of(nodeid), index)
        kind = next((k for k, prefix in enumerate(FIRST) if scope.startswith(prefix)), len(FIRST))
        return kind, self._first_index.get(scope, 0)


def make_scheduler(config: pytest.Config, log: Producer) -> SharedFixtureScheduling:
    return SharedFixtureScheduling(config, log)

"""Fixtures of the fault-injection tests: a results collector printed as the summary table.

Each test's results travel with its report (``user_properties``, see
:mod:`tests.faults.report`), so the table is complete under pytest-xdist too, where the
tests run in other processes than the one printing it (``tests/conftest.py`` prints it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .config import Result
from .report import as_property


@pytest.fixture
def fault_results(request: pytest.FixtureRequest) -> Iterator[list[Result]]:
    """The test appends the results of its scenarios here (printed at the end as one table)."""
    results: list[Result] = []
    yield results
    request.node.user_properties.extend(as_property(r) for r in results)

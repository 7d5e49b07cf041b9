"""Fixtures of the fault-injection tests: a results collector printed as the summary table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

_RESULTS = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def fault_results(request: pytest.FixtureRequest) -> Iterator[list]:  # type: ignore[type-arg]
    """Results of the scenarios run in this session (printed at the end as one table)."""
    results: list = []  # type: ignore[type-arg]
    request.config.stash[_RESULTS] = results
    yield results


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    results = config.stash.get(_RESULTS, None)
    if not results:
        return
    from .report import format_details, format_table

    terminalreporter.section("fault injection (small scale)")
    terminalreporter.write_line(format_table(results))
    terminalreporter.write_line(format_details(results))

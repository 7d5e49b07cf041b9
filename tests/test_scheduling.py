"""How pytest-xdist dispatches the suite (tests/support/scheduling.py): tests sharing a
package- or module-scoped fixture go together, the independent long ones alone."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.scheduling import FIRST, PACKAGES, SPREAD, scope_of

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PACKAGE_FIXTURE = re.compile(r"@pytest\.fixture\(scope=\"package\"")


def test_tests_of_a_module_go_together_and_a_spread_module_goes_test_by_test() -> None:
    a = "tests/integration/test_dashboard.py::test_the_page_shows_what_the_api_says"
    b = "tests/integration/test_dashboard.py::test_customer_lookup_and_screenshot"
    assert scope_of(a) == scope_of(b) == "tests/integration/test_dashboard.py"
    doctest = "scoring/apply.py::scoring.apply"
    assert scope_of(doctest) == "scoring/apply.py"
    for module in SPREAD:
        one, two = f"{module}::test_one", f"{module}::test_two[1]"
        assert scope_of(one) == one and scope_of(two) == two


def test_the_modules_of_a_shared_package_go_together() -> None:
    for package in PACKAGES:
        units = {
            scope_of(f"{p.relative_to(ROOT)}::test_x") for p in (ROOT / package).glob("test_*.py")
        }
        assert units == {package}


def test_every_integration_package_with_package_scoped_fixtures_is_dispatched_whole() -> None:
    """A package-scoped fixture (started workers) set up once per xdist process would cost
    its start-up several times over: such a package belongs in PACKAGES."""
    shared = {
        f"{conftest.parent.relative_to(ROOT)}/"
        for conftest in (TESTS / "integration").glob("*/conftest.py")
        if PACKAGE_FIXTURE.search(conftest.read_text("utf-8"))
    }
    assert shared == set(PACKAGES)
    for module in SPREAD:
        assert (ROOT / module).is_file(), module
        assert not re.search(r"scope=\"(module|package)\"", (ROOT / module).read_text("utf-8"))
    for prefix in FIRST:  # no stale entry: each names a path (and a test) that exists
        path, _, test = prefix.partition("::")
        assert (ROOT / path).exists(), prefix
        assert not test or f"def {test}" in (ROOT / path).read_text("utf-8"), prefix

"""Shared fixtures of the scoring-core tests: models and event builders. Pure, no services."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# An editable install made before scoring/__init__.py existed maps ``scoring`` to a
# namespace package; put the repository root first so the real package is imported.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from scoring_models import small_model  # noqa: E402

from scoring.events import Event  # noqa: E402
from scoring.model import Model, load_default_model  # noqa: E402


@pytest.fixture(scope="session")
def default_model() -> Model:
    return load_default_model()


@pytest.fixture(scope="session")
def model() -> Model:
    return small_model()


@pytest.fixture(scope="session")
def make_model() -> Callable[..., Model]:
    """``make_model(**tables)``: the small model with top-level tables replaced."""
    return small_model


@pytest.fixture
def event() -> Callable[..., Event]:
    """``event(type, ts_ms, event_id=None, customer_id="c1", nps_score=None)``."""
    counter = iter(range(1_000_000))

    def make(
        type_: str,
        ts_ms: int,
        event_id: str | None = None,
        customer_id: str = "c1",
        nps_score: int | None = None,
    ) -> Event:
        return Event(event_id or f"e{next(counter)}", customer_id, type_, ts_ms, nps_score)

    return make

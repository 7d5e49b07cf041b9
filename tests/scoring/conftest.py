"""Shared fixtures of the scoring-core tests: models and event builders. Pure, no services."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scoring.events import Event
from scoring.model import Model, load_default_model
from tests.scoring.scoring_models import small_model


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

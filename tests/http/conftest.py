"""A :class:`ReadApi` whose Redis is a closed port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from scoring import load_default_model
from stream_app.devkit.stack import free_port
from stream_app.http.api import ReadApi
from stream_app.store.keys import Keys
from stream_app.store.nps import NpsCounters
from stream_app.store.readstore import ReadStore
from stream_app.store.state import StateStore, connect


@pytest.fixture
def read_api() -> Iterator[ReadApi]:
    """A ReadApi whose Redis is a closed port: validation errors must come before I/O."""
    model = load_default_model()
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    keys = Keys("unit", model.name)
    yield ReadApi(
        model,
        keys,
        StateStore(client, keys),
        ReadStore(client, keys, model),
        NpsCounters(client, keys),
    )
    asyncio.run(client.aclose())

"""The decay tests' model file (one for the package) and the live worker of its first test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scoring import load_model
from stream_app.devkit.stack import LocalService
from tests.integration.decay.helpers import HALF_LIFE_MS, MODEL_TOML, Tail
from tests.integration.workers import Worker, start_worker, stop_all


@pytest.fixture(scope="package")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("decay-model") / "decay5s.toml"
    path.write_text(MODEL_TOML, "utf-8")
    model = load_model(path)
    assert model.half_lives_ms[model.dimension_index("content")] == pytest.approx(HALF_LIFE_MS)
    return path


@pytest.fixture(scope="module")
def decay_worker(
    tansu: LocalService,
    redis_server: LocalService,
    tmp_path_factory: pytest.TempPathFactory,
    model_file: Path,
) -> Iterator[Worker]:
    """A worker of the 5 s model (4 partitions, default 500 ms decay tick), consuming."""
    workdir = tmp_path_factory.mktemp("decay")
    w = start_worker(tansu, redis_server, workdir, name="live", model_file=model_file)
    try:
        w.wait_ready()
        yield w
    finally:
        stop_all([w])


@pytest.fixture(scope="module")
def output(decay_worker: Worker) -> Iterator[Tail]:
    with Tail(decay_worker.brokers, decay_worker.settings.output_topic) as tail:
        yield tail

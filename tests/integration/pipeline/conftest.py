"""The two workers the pipeline tests share (started once for the package) and the schemas
of what they publish."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import pytest

from stream_app.devkit.stack import LocalService
from tests.integration.workers import (
    DAY_MS,
    OLD_MS,
    SCHEMAS,
    Worker,
    capless_model_file,
    now_ms,
    start_worker,
    stop_all,
)


@pytest.fixture(scope="package")
def workers(
    tansu: LocalService, redis_server: LocalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Worker]]:
    workdir = tmp_path_factory.mktemp("pipeline")
    started: list[Worker] = []
    try:
        nocaps = capless_model_file(workdir)
        started.append(
            start_worker(tansu, redis_server, workdir / "nocaps", name="nocaps", model_file=nocaps)
        )
        # an age limit that still takes the probes at 2000-01-01 (and not 1970), and NPS
        # counters kept as long (the NPS test counts answers of 2021: not pruned under it)
        max_age_days = str((now_ms() - OLD_MS) // DAY_MS + 365)
        started.append(
            start_worker(
                tansu,
                redis_server,
                workdir / "default",
                name="default",
                ENGAGEMENT_MAX_EVENT_AGE_DAYS=max_age_days,
                ENGAGEMENT_NPS_RETENTION_DAYS=max_age_days,
            )
        )
        for w in started:
            w.wait_ready(at_ms=OLD_MS)  # the tests replay history into these workers
        yield {w.name: w for w in started}
    finally:
        unclean = stop_all(started)
    assert not unclean, "\n".join(unclean)  # SIGTERM stops a worker, even mid-batch


@pytest.fixture(scope="package")
def dead_letter_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "dead-letter.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="package")
def change_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "segment-change.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )

"""``/metrics`` rendering: ``prometheus_client``'s formats, chosen by the ``Accept`` header.

No services. The metrics of a running worker are checked in ``tests/integration/``
(``test_api.py``, ``test_dashboard.py``).
"""

from __future__ import annotations

import pytest

from stream_app.metrics import WorkerMetrics


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/plain; version=0.0.4; charset=utf-8"),
        ("*/*", "text/plain; version=0.0.4; charset=utf-8"),
        # what Prometheus 2.x sends: OpenMetrics first
        (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
            "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
        ),
    ],
)
def test_metrics_exposition_follows_the_accept_header(
    accept: str | None, content_type: str
) -> None:
    m = WorkerMetrics()
    m.applied.inc(2)
    body, got = m.registry.exposition(accept)
    assert got == content_type
    text = body.decode()
    assert "engagement_events_applied_total 2.0" in text
    assert text.endswith("# EOF\n") == content_type.startswith("application/openmetrics-text")

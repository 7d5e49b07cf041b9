"""Log formats (``ENGAGEMENT_LOG_FORMAT``) and ``engagement-scorer --version``.

No services: the commands run here fail to reach a closed port, which is the point.
The worker's own JSON log is checked in ``tests/integration/test_dashboard.py``.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from collections.abc import Iterator
from importlib import metadata

import orjson
import pytest

from stream_app import logs
from stream_app.cli.main import main
from stream_app.devkit.stack import free_port
from stream_app.settings import Settings, SettingsError


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, restored after a command reconfigured it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"engagement-scorer {metadata.version('engagement-scorer')}"
    )


def test_a_user_error_is_one_json_line_in_json_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root_logger: object
) -> None:
    monkeypatch.setenv("ENGAGEMENT_LOG_FORMAT", "json")
    monkeypatch.setenv("ENGAGEMENT_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert main(["score", "cust-1"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    doc = orjson.loads(line)
    assert doc["level"] == "error" and doc["command"] == "score"
    assert doc["logger"] == "stream_app.cli" and "Redis" in doc["message"]
    assert doc["time"].endswith("Z") and isinstance(doc["process"], int)


def test_a_user_error_is_one_text_line_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root_logger: object
) -> None:
    monkeypatch.delenv("ENGAGEMENT_LOG_FORMAT", raising=False)
    monkeypatch.setenv("ENGAGEMENT_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert main(["score", "cust-1"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("engagement-scorer score: error: Redis unreachable")


def test_a_bad_log_format_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root_logger: object
) -> None:
    monkeypatch.setenv("ENGAGEMENT_LOG_FORMAT", "xml")
    assert main(["check-model", "nothing.toml"]) == 2
    assert "ENGAGEMENT_LOG_FORMAT: one of text, json" in capsys.readouterr().err
    with pytest.raises(SettingsError):
        Settings.from_env({"ENGAGEMENT_LOG_FORMAT": "JSONL"})


def test_the_cli_logs_json_records(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root_logger: object
) -> None:
    logs.configure("json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("stream_app.cli").warning(
            "retrying %s", "redis", exc_info=True, extra={"attempt": 3, "when": object()}
        )
    (line,) = capsys.readouterr().err.splitlines()
    doc = orjson.loads(line)
    assert doc["message"] == "retrying redis" and doc["level"] == "warning"
    assert doc["attempt"] == 3 and doc["when"].startswith("<object")  # as text
    assert "ValueError: boom" in doc["exception"]


def test_the_worker_logging_config(root_logger: logging.Logger) -> None:
    assert logs.worker_logging_config("text", "info") is None  # faust's own format
    config = logs.worker_logging_config("json", "debug")
    assert config is not None
    logging.config.dictConfig(config)
    (handler,) = root_logger.handlers
    assert isinstance(handler.formatter, logs.JsonFormatter)
    assert root_logger.level == logging.DEBUG
    assert getattr(handler, "stream", None) is sys.stderr

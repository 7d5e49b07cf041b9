"""The command line reports any StreamAppError (and ScoringError) in one line, status 2."""

from __future__ import annotations

import argparse

import pytest

from scoring import InvalidModel
from stream_app.cli import commands
from stream_app.cli.main import main
from stream_app.errors import StreamAppError
from stream_app.kafka.io import BrokerUnavailable
from stream_app.kafka.topics import TopicsError
from stream_app.settings import SettingsError
from stream_app.store.state import StoreUnavailable


class SomethingNew(StreamAppError):
    """An error no list anywhere names."""


@pytest.mark.parametrize(
    "error",
    [
        SomethingNew("what to do"),
        BrokerUnavailable("cannot reach Kafka"),
        TopicsError("topics exist with other partition counts"),
        SettingsError("ENGAGEMENT_PARTITIONS: must be positive"),
        StoreUnavailable("Redis unreachable or refused the request (refused)"),
        InvalidModel("model.toml: tiers.warm: a number"),
    ],
)
def test_a_user_error_is_one_line_and_status_2(
    error: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(commands, "check_model", fail)
    assert main(["check-model", "x.toml"]) == 2
    err = capsys.readouterr().err
    assert err == f"engagement-scorer check-model: error: {error}\n"


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr(commands, "check_model", fail)
    with pytest.raises(KeyError):
        main(["check-model", "x.toml"])


def test_every_stream_app_error_class_derives_from_the_root() -> None:
    import importlib
    import inspect
    import pkgutil

    import stream_app

    found = []
    for info in pkgutil.walk_packages(stream_app.__path__, "stream_app."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == info.name and issubclass(obj, BaseException):
                found.append(obj)
                assert issubclass(obj, StreamAppError), obj
    assert len(found) >= 8

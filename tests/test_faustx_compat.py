"""The faust internals the worker patches are checked when the App is built."""

from __future__ import annotations

import faust
import pytest
from faust.streams import Stream

from stream_app.errors import StreamAppError
from stream_app.faustx import compat
from stream_app.faustx.compat import FaustIncompatible


def test_the_installed_faust_passes() -> None:
    compat.check()


def test_another_faust_release_is_refused_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(FaustIncompatible, match=r"faust-streaming 0\.16\.0 .*==0\.15\.\*"):
        compat.check()


def test_a_missing_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(Stream, "_enable_passive")
    with pytest.raises(FaustIncompatible, match=r"lacks Stream\._enable_passive"):
        compat.check()


def test_it_is_a_stream_app_error_so_the_cli_reports_it_in_one_line() -> None:
    assert issubclass(FaustIncompatible, StreamAppError)


def test_a_missing_table_manager_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.tables import TableManager

    monkeypatch.delattr(TableManager, "_update_channels")
    with pytest.raises(FaustIncompatible, match=r"lacks TableManager\._update_channels"):
        compat.check()

"""orjson, wrapped once: every JSON byte the stream app writes goes through here."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(obj: Any) -> bytes:
    """Serialise to compact JSON bytes (non-str dict keys allowed)."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


def dumps_str_keys(obj: Any) -> bytes:
    """``dumps`` of a document whose dict keys are all ``str`` (the same bytes; a third
    less work: the hot path's CloudEvents go this way). A non-str key raises TypeError.

    >>> dumps_str_keys({"a": [1, {"b": None}]}) == dumps({"a": [1, {"b": None}]})
    True
    """
    return orjson.dumps(obj)


def dumps_line(obj: Any) -> bytes:
    """Serialise to one JSON line terminated by a newline."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)


def loads(data: bytes | str) -> Any:
    """Parse JSON bytes or text."""
    return orjson.loads(data)

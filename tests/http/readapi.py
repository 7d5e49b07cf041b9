"""Calling the read API without Redis: an answer or its error, and whether a request got
past validation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path

import redis.exceptions

from stream_app.http.api import Answer, ApiError

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "docs" / "openapi.yaml"
VIEWS = REPO / "stream_app" / "http" / "views.py"
TODAY = date(2024, 3, 15)


def run(call: Awaitable[Answer]) -> Answer:
    async def wrapped() -> Answer:
        try:
            return await call
        except ApiError as exc:
            return exc.answer

    return asyncio.run(wrapped())


def error_code(answer: Answer) -> tuple[int, str]:
    status, body = answer
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return status, body["error"]["code"]


def reaches_redis(call: Callable[[], Awaitable[Answer]]) -> bool:
    """True when the request passed validation and went on to (the absent) Redis."""
    try:
        run(call())
    except (redis.exceptions.ConnectionError, OSError):
        return True
    return False

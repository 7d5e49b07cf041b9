"""The dashboard page and the read endpoints behind its charts, on faust's web server.

* ``GET /dashboard`` and ``/dashboard/static/<file>``: the page, its script and style,
  shipped in the package (``stream_app/http/static/``; no CDN, no build step). Open: they
  hold no data. The page reads everything through the ``/v1/`` API with the API token the
  user gives it (from the URL fragment ``#token=...`` or its sign-in field).
* ``GET /v1/nps/daily``: NPS per day of a window, overall and by tier.
* ``GET /v1/changes``: the latest segment changes (:mod:`stream_app.changefeed`).
* ``GET /v1/customers/{id}/timeline``: a customer's score and dimensions over time
  (:mod:`stream_app.timeline`).

Routes are thin, as in ``views.py``: token check, hand-over, JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

from aiokafka import AIOKafkaConsumer

from .api import ApiError, error
from .app import app, settings
from .changefeed import KEEP, ChangeFeed
from .kafka_auth import aiokafka_config
from .views import _JsonView, _read_api

STATIC = resources.files(__package__).joinpath("http", "static")
#: The files the page is made of, with their content types (nothing else is served).
ASSETS = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
#: The page loads its own script and style and talks to its own origin, nothing else.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
DEFAULT_CHANGES = 50
#: How long the first request for the feed waits for the latest changes to be read.
FIRST_READ_WAIT_S = 3.0

_feed: dict[str, ChangeFeed] = {}


def asset(name: str) -> bytes:
    """The bytes of one of :data:`ASSETS` (KeyError for any other name)."""
    if name not in ASSETS:  # only the listed files, whatever the path says
        raise KeyError(name)
    return STATIC.joinpath(name).read_bytes()


def changes_limit(query: Mapping[str, str]) -> int:
    """The ``limit`` of ``GET /v1/changes`` (default 50, at most :data:`KEEP`).

    >>> changes_limit({}), changes_limit({"limit": "200"})
    (50, 200)
    >>> changes_limit({"limit": "0"})
    Traceback (most recent call last):
    ...
    stream_app.api.ApiError: limit: must be between 1 and 200
    """
    text = query.get("limit") or str(DEFAULT_CHANGES)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= KEEP:
        raise ApiError(400, "bad_limit", f"limit: must be between 1 and {KEEP}")
    return int(text)


async def change_feed() -> ChangeFeed:
    """This worker's feed of the output topic, started on first use, stopped with the app."""
    if "feed" not in _feed:

        def consumer() -> AIOKafkaConsumer:
            return AIOKafkaConsumer(
                bootstrap_servers=",".join(settings.broker_list),
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=200,
                **aiokafka_config(settings),
            )

        feed = _feed["feed"] = ChangeFeed(consumer, settings.output_topic, keep=KEEP)
        await app.add_runtime_dependency(feed)
    return _feed["feed"]


def _static(view: _JsonView, name: str) -> Any:
    try:
        body = asset(name)
    except KeyError:
        return view.json(error(404, "not_found", f"no file {name!r}")[1], status=404)
    return view.bytes(body, headers={**PAGE_HEADERS, "Content-Type": ASSETS[name]})


@app.page("/dashboard")
class DashboardView(_JsonView):
    async def get(self, request: Any) -> Any:
        return _static(self, "dashboard.html")


@app.page("/dashboard/static/{name}")
class DashboardAssetView(_JsonView):
    async def get(self, request: Any, name: str) -> Any:
        return _static(self, name)


@app.page("/v1/nps/daily")
class NpsDailyView(_JsonView):
    async def get(self, request: Any) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        return self.answer(await (await _read_api()).nps_daily(dict(request.query)))


@app.page("/v1/changes")
class ChangesView(_JsonView):
    async def get(self, request: Any) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        try:
            limit = changes_limit(request.query)
        except ApiError as exc:
            return self.answer(exc.answer)
        feed = await change_feed()
        await feed.wait_filled(FIRST_READ_WAIT_S)  # (a feed just started reads the latest)
        return self.json({"topic": feed.topic, "changes": feed.latest(limit)})


@app.page("/v1/customers/{customer_id:[^/]+}/timeline")
class TimelineView(_JsonView):
    async def get(self, request: Any, customer_id: str) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        try:
            return self.answer(await (await _read_api()).timeline(customer_id, dict(request.query)))
        except ApiError as exc:
            return self.answer(exc.answer)

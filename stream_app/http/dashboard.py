"""The dashboard page's files, and the parameter of its live feed.

* ``GET /dashboard`` and ``/dashboard/static/<file>``: the page, its script and style,
  shipped in the package (``stream_app/http/static/``; no CDN, no build step). Open: they
  hold no data. The page reads everything through the ``/v1/`` API with the API token the
  user gives it (from the URL fragment ``#token=...`` or its sign-in field).
* The endpoints behind its charts are routed in ``views.py``: ``GET /v1/nps/daily``
  (:mod:`stream_app.http.npsdaily`), ``GET /v1/customers/{id}/timeline``
  (:mod:`stream_app.http.timeline`) and ``GET /v1/changes``
  (:mod:`stream_app.http.changefeed`, with :func:`changes_limit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

from stream_app.http.api import ApiError
from stream_app.http.changefeed import KEEP

STATIC = resources.files(__package__).joinpath("static")
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
    stream_app.http.api.ApiError: limit: must be between 1 and 200
    """
    text = query.get("limit") or str(DEFAULT_CHANGES)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= KEEP:
        raise ApiError(400, "bad_limit", f"limit: must be between 1 and {KEEP}")
    return int(text)

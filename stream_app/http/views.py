"""HTTP routes on faust's web server: the /v1/ read API, the dashboard, health and metrics.

Thin: each route checks its token, hands over to :class:`stream_app.http.api.ReadApi`,
:class:`stream_app.http.health.Health` or the :class:`stream_app.http.changefeed.ChangeFeed`,
and renders JSON (the dashboard's files: :mod:`stream_app.http.dashboard`). faust's own
/router and /table views are switched off in ``app.py`` (they have no auth).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust import web

from stream_app.http import dashboard
from stream_app.http.admin import AdminApi
from stream_app.http.api import Answer, ApiError, ReadApi, authorized, error
from stream_app.http.changefeed import ChangeFeed
from stream_app.http.health import Health
from stream_app.worker.errors import transient_cause
from stream_app.worker.metrics import WorkerMetrics

log = logging.getLogger("stream_app.http")


class _JsonView(web.View):
    tokens: Sequence[str] = ()

    def answer(self, result: Answer) -> Any:
        status, body = result
        return self.json(body, status=status)

    def denied(self, request: Any) -> Any | None:
        if authorized(request.headers.get("Authorization"), self.tokens):
            return None
        return self.json(error(401, "unauthorized", "a valid bearer token is required")[1],
                         status=401, headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    async def answered(self, request: Any, ask: Callable[[], Awaitable[Answer]]) -> Any:
        """The answer of ``ask`` when the request's token is good. Any failure is answered
        in JSON without internals (they go to the worker's log): 503 when Redis or the
        broker cannot answer now, 500 otherwise."""
        if (refused := self.denied(request)) is not None:
            return refused
        try:
            return self.answer(await ask())
        except ApiError as exc:
            status, body = exc.answer
            return self.json(body, status=status, headers=exc.headers or None)
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path)
            if transient_cause(exc) is not None:
                return self.answer(error(503, "unavailable", "the state store cannot answer now"))
            return self.answer(error(500, "internal_error", "the request failed"))

    def static(self, name: str) -> Any:
        """One of the dashboard's files, with the page's headers (404 for any other name)."""
        try:
            body = dashboard.asset(name)
        except KeyError:
            return self.json(error(404, "not_found", f"no file {name!r}")[1], status=404)
        headers = {**dashboard.PAGE_HEADERS, "Content-Type": dashboard.ASSETS[name]}
        return self.bytes(body, headers=headers)


class _AdminView(_JsonView):
    """The erase and merge endpoints: off (403) while no admin token is configured."""

    def denied(self, request: Any) -> Any | None:
        if not self.tokens:
            body = error(403, "admin_disabled", "set ENGAGEMENT_ADMIN_TOKENS to use this")[1]
            return self.json(body, status=403)
        return super().denied(request)

    async def body(self, request: Any) -> object:
        """The request's JSON body (None when it has none or it is not JSON)."""
        try:
            return await request.json()
        except ValueError:
            return None


def register(
    app: Any,
    *,
    api: ReadApi,
    admin: AdminApi,
    health: Health,
    metrics: WorkerMetrics,
    feed: ChangeFeed,
    api_tokens: Sequence[str],
    ops_tokens: Sequence[str],
    admin_tokens: Sequence[str] = (),
) -> None:
    """Add the routes to ``app``: ``api_tokens`` guard /v1/, ``ops_tokens`` /readyz and
    /metrics (empty: open), ``admin_tokens`` the erase and merge endpoints (empty: off);
    the dashboard's files are open (they hold no data). ``feed`` starts following the
    output topic on the first ``GET /v1/changes``."""
    _read_routes(app, api, api_tokens)
    _admin_routes(app, admin, admin_tokens)
    _dashboard_routes(app, feed, api_tokens)
    _ops_routes(app, health, metrics, ops_tokens)


def _read_routes(app: Any, api: ReadApi, api_tokens: Sequence[str]) -> None:
    """The /v1/ read endpoints over the worker's Redis state."""

    class ApiView(_JsonView):
        tokens = tuple(api_tokens)

    # ``[^/]+``, not aiohttp's default ``[^{}/]+``: ids may hold braces (and an encoded slash).
    @app.page("/v1/customers/{customer_id:[^/]+}")
    class CustomerView(ApiView):
        async def get(self, request: Any, customer_id: str) -> Any:
            return await self.answered(request, lambda: api.customer(customer_id))

    @app.page("/v1/customers/{customer_id:[^/]+}/explain")
    class ExplainView(ApiView):
        async def get(self, request: Any, customer_id: str) -> Any:
            return await self.answered(request, lambda: api.explain(customer_id))

    @app.page("/v1/customers/{customer_id:[^/]+}/timeline")
    class TimelineView(ApiView):
        async def get(self, request: Any, customer_id: str) -> Any:
            query = dict(request.query)
            return await self.answered(request, lambda: api.timeline(customer_id, query))

    @app.page("/v1/tiers")
    class TiersView(ApiView):
        async def get(self, request: Any) -> Any:
            return await self.answered(request, api.tiers)

    @app.page("/v1/segments")
    class SegmentsView(ApiView):
        async def get(self, request: Any) -> Any:
            return await self.answered(request, api.segments)

    @app.page("/v1/segments/{name}/members")
    class MembersView(ApiView):
        async def get(self, request: Any, name: str) -> Any:
            return await self.answered(request, lambda: api.members(name, dict(request.query)))

    @app.page("/v1/nps")
    class NpsView(ApiView):
        async def get(self, request: Any) -> Any:
            return await self.answered(request, lambda: api.nps(dict(request.query)))

    @app.page("/v1/nps/daily")
    class NpsDailyView(ApiView):
        async def get(self, request: Any) -> Any:
            return await self.answered(request, lambda: api.nps_daily(dict(request.query)))


def _dashboard_routes(app: Any, feed: ChangeFeed, api_tokens: Sequence[str]) -> None:
    """The dashboard's page and files (open), and its live feed (``GET /v1/changes``)."""

    class ApiView(_JsonView):
        tokens = tuple(api_tokens)

    async def changes(query: dict[str, str]) -> Answer:
        limit = dashboard.changes_limit(query)
        await feed.start_under(app)
        await feed.wait_filled(dashboard.FIRST_READ_WAIT_S)  # (just started: reads the latest)
        return 200, {"topic": feed.topic, "changes": feed.latest(limit)}

    @app.page("/v1/changes")
    class ChangesView(ApiView):
        async def get(self, request: Any) -> Any:
            return await self.answered(request, lambda: changes(dict(request.query)))

    @app.page("/dashboard")
    class DashboardView(_JsonView):
        async def get(self, request: Any) -> Any:
            return self.static("dashboard.html")

    @app.page("/dashboard/static/{name}")
    class DashboardFileView(_JsonView):
        async def get(self, request: Any, name: str) -> Any:
            return self.static(name)


def _ops_routes(
    app: Any, health: Health, metrics: WorkerMetrics, ops_tokens: Sequence[str]
) -> None:
    """Liveness (open), readiness and metrics (the ops tokens)."""

    class OpsView(_JsonView):
        tokens = tuple(ops_tokens)

    @app.page("/healthz")
    class HealthView(_JsonView):
        async def get(self, request: Any) -> Any:  # open: liveness probes carry no token
            alive, body = health.liveness()
            return self.json(body, status=200 if alive else 503)

    @app.page("/readyz")
    class ReadyView(OpsView):
        async def get(self, request: Any) -> Any:
            if (refused := self.denied(request)) is not None:
                return refused
            ready, checks = await health.readiness()
            return self.json({"ready": ready, "checks": checks}, status=200 if ready else 503)

    @app.page("/metrics")
    class MetricsView(OpsView):
        async def get(self, request: Any) -> Any:
            if (refused := self.denied(request)) is not None:
                return refused
            await _refreshed(health)
            body, content_type = metrics.registry.exposition(request.headers.get("Accept"))
            # (a header: aiohttp refuses a charset in ``content_type``)
            return self.bytes(body, headers={"Content-Type": content_type})


async def _refreshed(health: Health) -> None:
    """Refresh the gauges for a scrape; should that fail, the counters still render."""
    try:
        await health.refresh_gauges()
    except Exception as exc:  # noqa: BLE001 - a scrape never fails for a gauge
        log.warning("gauges not refreshed for /metrics: %s", exc)


def _admin_routes(app: Any, admin: AdminApi, admin_tokens: Sequence[str]) -> None:
    """POST /v1/customers/{id}/erase and /merge, guarded by ``admin_tokens``."""

    class AdminView(_AdminView):
        tokens = tuple(admin_tokens)

    @app.page("/v1/customers/{customer_id:[^/]+}/erase")
    class EraseView(AdminView):
        async def post(self, request: Any, customer_id: str) -> Any:
            return await self.answered(request, lambda: admin.erase(customer_id))

    @app.page("/v1/customers/{customer_id:[^/]+}/merge")
    class MergeView(AdminView):
        async def post(self, request: Any, customer_id: str) -> Any:
            body = await self.body(request)
            return await self.answered(request, lambda: admin.merge(customer_id, body))

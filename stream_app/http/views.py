"""HTTP routes on faust's web server: the /v1/ read API, health and metrics.

Thin: each route checks its token, hands over to :class:`stream_app.http.api.ReadApi`
or :class:`stream_app.http.health.Health`, and renders JSON. faust's own /router and
/table views are switched off in ``app.py`` (they have no auth).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from faust import web

from stream_app.http.api import Answer, ApiError, ReadApi, authorized, error
from stream_app.http.health import Health
from stream_app.worker.errors import transient_cause
from stream_app.worker.metrics import WorkerMetrics

log = logging.getLogger("stream_app.http")


class ApiSource(Protocol):
    """The read API of the model a request asks for (``?model=active|shadow``)."""

    async def get(self, which: str | None, /) -> ReadApi:
        """The API of the model in force (None, ``active``) or of the shadow."""
        ...


def _asking(
    apis: ApiSource, request: Any, use: Callable[[ReadApi], Awaitable[Answer]]
) -> Callable[[], Awaitable[Answer]]:
    """What a /v1/ view asks: ``use`` on the API of the model the request names."""

    async def ask() -> Answer:
        return await use(await apis.get(request.query.get("model")))

    return ask


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
            return self.answer(exc.answer)
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path)
            if transient_cause(exc) is not None:
                return self.answer(error(503, "unavailable", "the state store cannot answer now"))
            return self.answer(error(500, "internal_error", "the request failed"))


def register(
    app: Any,
    *,
    apis: ApiSource,
    health: Health,
    metrics: WorkerMetrics,
    api_tokens: Sequence[str],
    ops_tokens: Sequence[str],
) -> None:
    """Add the routes to ``app``: ``api_tokens`` guard /v1/, ``ops_tokens`` /readyz and
    /metrics (empty: open). Every /v1/ route takes ``?model=shadow`` to answer from the
    shadow model (default: the model in force)."""

    class ApiView(_JsonView):
        tokens = tuple(api_tokens)

    class OpsView(_JsonView):
        tokens = tuple(ops_tokens)

    # ``[^/]+``, not aiohttp's default ``[^{}/]+``: ids may hold braces (and an encoded slash).
    @app.page("/v1/customers/{customer_id:[^/]+}")
    class CustomerView(ApiView):
        async def get(self, request: Any, customer_id: str) -> Any:
            return await self.answered(
                request, _asking(apis, request, lambda a: a.customer(customer_id))
            )

    @app.page("/v1/customers/{customer_id:[^/]+}/explain")
    class ExplainView(ApiView):
        async def get(self, request: Any, customer_id: str) -> Any:
            return await self.answered(
                request, _asking(apis, request, lambda a: a.explain(customer_id))
            )

    @app.page("/v1/tiers")
    class TiersView(ApiView):
        async def get(self, request: Any) -> Any:
            return await self.answered(request, _asking(apis, request, lambda a: a.tiers()))

    @app.page("/v1/segments")
    class SegmentsView(ApiView):
        async def get(self, request: Any) -> Any:
            return await self.answered(request, _asking(apis, request, lambda a: a.segments()))

    @app.page("/v1/segments/{name}/members")
    class MembersView(ApiView):
        async def get(self, request: Any, name: str) -> Any:
            return await self.answered(
                request, _asking(apis, request, lambda a: a.members(name, dict(request.query)))
            )

    @app.page("/v1/nps")
    class NpsView(ApiView):
        async def get(self, request: Any) -> Any:
            return await self.answered(
                request, _asking(apis, request, lambda a: a.nps(dict(request.query)))
            )

    @app.page("/healthz")
    class HealthView(ApiView):
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
            return self.bytes(metrics.registry.render(), content_type="text/plain; version=0.0.4")


async def _refreshed(health: Health) -> None:
    """Refresh the gauges for a scrape; should that fail, the counters still render."""
    try:
        await health.refresh_gauges()
    except Exception as exc:  # noqa: BLE001 - a scrape never fails for a gauge
        log.warning("gauges not refreshed for /metrics: %s", exc)

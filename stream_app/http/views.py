"""HTTP routes on faust's web server: the /v1/ read API, health and metrics.

Thin: each route checks its token, hands over to :class:`stream_app.http.api.ReadApi`
or :mod:`stream_app.http.health`, and renders JSON. faust's own /router and /table
views are switched off in ``app.py`` (they have no auth).
"""

from __future__ import annotations

from typing import Any

from faust import web

from stream_app.app import app, settings
from stream_app.http.api import Answer, ApiError, ReadApi, authorized, error
from stream_app.http.health import readiness, refresh_gauges
from stream_app.worker.runtime import runtime

_built: dict[str, ReadApi] = {}


async def _read_api() -> ReadApi:
    """The read API over the runtime's Redis state (built on first use)."""
    if "api" not in _built:
        processor = await runtime.processor()
        assert runtime.readstore is not None and runtime.store is not None
        _built["api"] = ReadApi(processor.model, runtime.store, runtime.readstore)
    return _built["api"]


class _JsonView(web.View):
    tokens = settings.api_token_list

    def answer(self, result: Answer) -> Any:
        status, body = result
        return self.json(body, status=status)

    def denied(self, request: Any) -> Any | None:
        if authorized(request.headers.get("Authorization"), self.tokens):
            return None
        return self.json(error(401, "unauthorized", "a valid bearer token is required")[1],
                         status=401, headers={"WWW-Authenticate": "Bearer"})  # fmt: skip


# ``[^/]+``, not aiohttp's default ``[^{}/]+``: ids may hold braces (and an encoded slash).
@app.page("/v1/customers/{customer_id:[^/]+}")
class CustomerView(_JsonView):
    async def get(self, request: Any, customer_id: str) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        try:
            return self.answer(await (await _read_api()).customer(customer_id))
        except ApiError as exc:
            return self.answer(exc.answer)


@app.page("/v1/customers/{customer_id:[^/]+}/explain")
class ExplainView(_JsonView):
    async def get(self, request: Any, customer_id: str) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        try:
            return self.answer(await (await _read_api()).explain(customer_id))
        except ApiError as exc:
            return self.answer(exc.answer)


@app.page("/v1/tiers")
class TiersView(_JsonView):
    async def get(self, request: Any) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        return self.answer(await (await _read_api()).tiers())


@app.page("/v1/segments")
class SegmentsView(_JsonView):
    async def get(self, request: Any) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        return self.answer(await (await _read_api()).segments())


@app.page("/v1/segments/{name}/members")
class MembersView(_JsonView):
    async def get(self, request: Any, name: str) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        return self.answer(await (await _read_api()).members(name, dict(request.query)))


@app.page("/v1/nps")
class NpsView(_JsonView):
    async def get(self, request: Any) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        return self.answer(await (await _read_api()).nps(dict(request.query)))


@app.page("/healthz")
class HealthView(_JsonView):
    async def get(self, request: Any) -> Any:
        return self.json({"status": "ok"})


@app.page("/readyz")
class ReadyView(_JsonView):
    tokens = settings.ops_token_list

    async def get(self, request: Any) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        ready, checks = await readiness(app, runtime, settings)
        return self.json({"ready": ready, "checks": checks}, status=200 if ready else 503)


@app.page("/metrics")
class MetricsView(_JsonView):
    tokens = settings.ops_token_list

    async def get(self, request: Any) -> Any:
        if (refused := self.denied(request)) is not None:
            return refused
        await refresh_gauges(app, runtime, settings)
        return self.bytes(
            runtime.metrics.registry.render(), content_type="text/plain; version=0.0.4"
        )

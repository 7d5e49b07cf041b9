"""``engagement-scorer worker``: the start-up sequence, where every part is built once.

Settings, model, topics, the faust App, the worker's services; then the agent and its
timers and the HTTP routes are registered on the App with what each of them uses.
"""

from __future__ import annotations

import asyncio

from scoring import load_model
from stream_app.settings import Settings


def run_worker(settings: Settings, *, loop: str = "uvloop") -> int:
    """Build the worker for ``settings`` and run it until it is stopped."""
    model = load_model(settings.model_path)  # a bad model file fails here, with its key named
    from stream_app.kafka.topics import prepare

    partitions = asyncio.run(prepare(settings))
    if loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")
    from faust import Worker

    from stream_app.app import create_app
    from stream_app.faustx.adapters import FaustConsumer, FaustPublisher
    from stream_app.http import views
    from stream_app.http.admin import AdminApi
    from stream_app.http.api import ReadApi
    from stream_app.http.health import Health
    from stream_app.worker import agents
    from stream_app.worker.runtime import Runtime
    from stream_app.worker.services import build_services

    app = create_app(settings)
    publisher = FaustPublisher(app)
    services = build_services(
        settings,
        model=model,
        input_partitions=partitions,
        publisher=publisher,
        consumer=FaustConsumer(app),
    )
    agents.register(app, Runtime(services), settings, services.topics)
    health = Health(
        store=services.store,
        consumer=services.consumer,
        progress=services.scorer.progress,
        topics=services.topics,
        metrics=services.metrics,
        ready_max_lag=settings.ready_max_lag,
    )
    views.register(
        app,
        api=ReadApi(model, services.keys, services.store, services.readstore, services.lifecycle),
        admin=AdminApi(publisher, settings.input_topic),
        health=health,
        metrics=services.metrics,
        api_tokens=settings.api_token_list,
        ops_tokens=settings.ops_token_list,
        admin_tokens=settings.admin_token_list,
    )
    Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()
    return 0

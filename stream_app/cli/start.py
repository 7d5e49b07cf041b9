"""``engagement-scorer worker``: the start-up sequence, where every part is built once.

Settings, model, topics, the faust App, the worker's services; then the agent and its
timers and the HTTP routes (with the dashboard's change feed) are registered on the App
with what each of them uses.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from scoring import load_model
from stream_app import logs
from stream_app.settings import Settings
from stream_app.store.nps import NpsCounters


def run_worker(settings: Settings, *, loop: str = "uvloop") -> int:
    """Build the worker for ``settings`` and run it until it is stopped."""
    settings.check_exposure()  # before anything else: no open API beyond loopback
    logging.getLogger("stream_app").setLevel(settings.log_level.upper())
    model = load_model(settings.model_path)  # a bad model file fails here, with its key named
    from stream_app.kafka.topics import prepare
    from stream_app.worker.preflight import preflight

    partitions = asyncio.run(prepare(settings))
    idempotent = asyncio.run(preflight(settings))
    if loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")
    from faust import Worker

    from stream_app.app import create_app
    from stream_app.faustx.adapters import FaustConsumer, FaustPublisher
    from stream_app.http import views
    from stream_app.http.admin import AdminApi
    from stream_app.http.api import ReadApi
    from stream_app.http.changefeed import ChangeFeed
    from stream_app.http.health import Health
    from stream_app.kafka.auth import aiokafka_config
    from stream_app.kafka.io import reader
    from stream_app.worker import agents
    from stream_app.worker.runtime import Runtime
    from stream_app.worker.services import build_services

    app = create_app(settings, idempotent=idempotent)
    publisher = FaustPublisher(app)
    services = build_services(
        settings,
        model=model,
        input_partitions=partitions,
        publisher=publisher,
        consumer=FaustConsumer(app),
    )
    runtime = Runtime(services)
    agents.register(app, runtime, settings, services.topics)
    health = Health(
        store=services.store,
        readstore=services.readstore,
        consumer=services.consumer,
        progress=services.scorer.progress,
        topics=services.topics,
        metrics=services.metrics,
        ready_max_lag=settings.ready_max_lag,
        liveness=runtime.liveness,
        stall_seconds=settings.stall_seconds,
    )
    views.register(
        app,
        api=ReadApi(
            model,
            services.keys,
            services.store,
            services.readstore,
            NpsCounters(services.redis, services.keys),
            lifecycle=services.lifecycle,
        ),
        admin=AdminApi(publisher, settings.input_topic),
        health=health,
        metrics=services.metrics,
        feed=ChangeFeed(
            functools.partial(reader, settings.broker_list, **aiokafka_config(settings)),
            settings.output_topic,
        ),
        api_tokens=settings.api_token_list,
        ops_tokens=settings.ops_token_list,
        admin_tokens=settings.admin_token_list,
    )
    Worker(
        app,
        loglevel=settings.log_level.upper(),
        quiet=True,
        logging_config=logs.worker_logging_config(settings.log_format, settings.log_level),
    ).execute_from_commandline()
    return 0

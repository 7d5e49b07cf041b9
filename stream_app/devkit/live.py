"""``engagement-scorer dev``: broker, Redis, worker and traffic on loopback, with a live view.

Everything it starts (Tansu, redis-server, the worker process) is stopped by pid
when it ends, on Ctrl-C, SIGTERM or ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import redis.exceptions
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from scoring import load_model, nps
from stream_app import jsonutil
from stream_app.aioutil import raise_if_cancelled
from stream_app.devkit import simulator
from stream_app.devkit.stack import (
    DevStackError,
    LocalService,
    free_port,
    start_redis,
    start_tansu,
)
from stream_app.kafka.auth import aiokafka_config
from stream_app.kafka.io import AiokafkaPublisher, consume
from stream_app.kafka.topics import prepare
from stream_app.messages import OutMessage
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.state import StateStore, StoreUnavailable, connect

#: A few messages that cannot be scored, sent during the demo to show the dead-letter topic.
BAD_EVENTS = (
    b"{not json",
    b'{"event_id":"bad-1","customer_id":"c 1","type":"web_visit","timestamp":1}',
    b'{"event_id":"bad-2","customer_id":"c1","type":"nps_response","timestamp":1,'
    b'"properties":{"score":11}}',
)


@dataclass
class View:
    """What the live view shows; updated from the output and dead-letter topics."""

    customers: int
    tiers: list[str]
    produced: int = 0
    phase: str = "starting"
    tier_of: dict[str, str] = field(default_factory=dict)
    changes: Counter[str] = field(default_factory=Counter)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=14))
    dead: Counter[str] = field(default_factory=Counter)
    nps: int | None = None
    responses: int = 0
    links: list[str] = field(default_factory=list)

    def on_change(self, ce: dict[str, object]) -> str:
        data = ce["data"]
        assert isinstance(data, dict)
        cid = str(data["customer_id"])
        kind = str(ce["type"]).rsplit(".", 1)[-1]
        self.changes[str(ce["type"])] += 1
        if data["kind"] == "tier":
            self.tier_of[cid] = str(data["to"])
            what = f"{data['from']} -> {data['to']}"
        else:
            what = f"{kind} {data['segment']}"
        line = (
            f"{str(ce['time'])[:19]}  {cid:<12} {what:<40} score {float(str(data['score'])):7.2f}"
        )
        line += f"  ({data['cause']})"
        self.recent.appendleft(line)
        return line

    def render(self) -> Group:
        counts = Counter(self.tier_of.values())
        counts[self.tiers[0]] += self.customers - sum(counts.values())
        thermo = Table(title="engagement thermometer", expand=False)
        for t in self.tiers:
            thermo.add_column(t, justify="right")
        thermo.add_row(*(str(counts[t]) for t in self.tiers))
        totals = Table(show_header=False, box=None)
        totals.add_row("phase", self.phase)
        totals.add_row("events produced", str(self.produced))
        for name, n in sorted(self.changes.items()):
            totals.add_row(name, str(n))
        totals.add_row("dead letters", ", ".join(f"{k}={v}" for k, v in self.dead.items()) or "0")
        totals.add_row(
            "NPS (all time)",
            f"{self.nps} from {self.responses} responses" if self.nps is not None else "-",
        )
        recent = Table(title="latest segment changes", show_header=False, expand=True)
        recent.add_column("change")
        for line in self.recent:
            recent.add_row(line)
        return Group(*self.links, thermo, totals, recent)


def run_dev(args: argparse.Namespace) -> int:
    console = Console(stderr=False)
    workdir = Path(tempfile.mkdtemp(prefix="engagement-dev-"))
    started: list[LocalService] = []
    worker: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Ctrl-C stops dev even when it was started with SIGINT ignored (a background job of
    # a script, nohup): an ignored signal stays ignored across exec, and asyncio.run only
    # handles SIGINT when Python's default handler is in place
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        console.print(f"[bold]engagement-scorer dev[/] - files in {workdir}")
        started.append(start_tansu(log_dir=workdir))
        started.append(start_redis(data_dir=workdir / "redis"))
        tansu, redis_svc = started
        env = dict(os.environ)
        env.update(
            {
                "ENGAGEMENT_KAFKA_BROKERS": tansu.url,
                "ENGAGEMENT_REDIS_URL": redis_svc.url,
                "ENGAGEMENT_WEB_BIND": "127.0.0.1",
                "ENGAGEMENT_WEB_PORT": str(_web_port(args.web_port)),
                "ENGAGEMENT_PARTITIONS": "4",
                "ENGAGEMENT_LOG_LEVEL": "info",
                "ENGAGEMENT_DATA_DIR": str(workdir / "faust"),
            }
        )
        settings = Settings.from_env(env)
        if not settings.api_token_list:  # the API and dashboard get a token of this run's
            env["ENGAGEMENT_API_TOKENS"] = secrets.token_urlsafe(18)
            settings = Settings.from_env(env)
        asyncio.run(prepare(settings))
        with open(workdir / "worker.log", "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "stream_app.cli", "worker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        console.print(
            f"started: broker pid {tansu.pid} ({tansu.url}), redis pid {redis_svc.pid} "
            f"({redis_svc.url}), worker pid {worker.pid} (log {workdir / 'worker.log'})"
        )
        links = endpoints(settings, workdir)
        for line in links:
            console.print(line, highlight=False, soft_wrap=True)
        plain = args.plain or not console.is_terminal
        if asyncio.run(_drive(settings, args, console, plain, worker, links=links)):
            console.print("interrupted")
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        _stop_all(console, worker, started)
    return 0


def _web_port(wanted: int | None) -> int:
    """``wanted``, or the default web port when it is free, else any free port."""
    if wanted is not None:
        return free_port(wanted)
    try:
        return free_port(Settings().web_port)
    except DevStackError:
        return free_port()


def endpoints(settings: Settings, workdir: Path) -> list[str]:
    """How to reach this dev stack: dashboard, API, metrics, and the CLI's variables (also
    written to ``<workdir>/env``, for ``source``)."""
    base = f"http://{settings.web_bind}:{settings.web_port}"
    token = settings.api_token_list[0]
    exports = {
        "ENGAGEMENT_KAFKA_BROKERS": settings.kafka_brokers,
        "ENGAGEMENT_REDIS_URL": settings.redis_url,
        "ENGAGEMENT_API_TOKENS": settings.api_tokens,
    }
    env_file = workdir / "env"
    env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in exports.items()), "utf-8")
    ops = " (token: ENGAGEMENT_OPS_TOKENS)" if settings.ops_token_list else ""
    return [
        f"dashboard: {base}/dashboard#token={token}",
        f"API:       curl -H 'Authorization: Bearer {token}' {base}/v1/tiers",
        f"metrics:   {base}/metrics{ops}",
        f"CLI:       source {env_file}  # then engagement-scorer score|tail|produce ...",
    ]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_all(
    console: Console, worker: subprocess.Popen[bytes] | None, started: list[LocalService]
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
    try:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for svc in reversed(started):
            svc.stop()
        console.print("stopped: worker, redis and broker")
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


async def _drive(
    settings: Settings,
    args: argparse.Namespace,
    console: Console,
    plain: bool,
    worker: subprocess.Popen[bytes],
    *,
    links: list[str],
) -> bool:
    """Drive the demo until ``--duration`` or SIGTERM (True: stopped by the signal).

    SIGTERM stops it as asyncio stops on Ctrl-C: through the loop, so every task is
    cancelled and its clients closed, not interrupted half-way (a KeyboardInterrupt in the
    middle of a producer's close left its task pending when the loop closed).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    model = load_model(settings.model_path)
    view = View(customers=args.customers, tiers=[t.name for t in model.tiers], links=links)
    tasks = [
        asyncio.create_task(_traffic(settings, args, view)),
        asyncio.create_task(_follow(settings, view, console, plain)),
        asyncio.create_task(_follow_dlq(settings, view)),
        asyncio.create_task(_nps(settings, model.name, view)),
    ]
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        if plain:
            await _wait(tasks, deadline, worker, stop)
        else:
            with Live(view.render(), console=console, refresh_per_second=4) as live:
                await _wait(tasks, deadline, worker, stop, lambda: live.update(view.render()))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_interrupt)  # (until the clean-up is done)
    return stop.is_set()


async def _wait(
    tasks: list[asyncio.Task[None]],
    deadline: float | None,
    worker: subprocess.Popen[bytes],
    stop: asyncio.Event,
    tick: object = None,
) -> None:
    while (deadline is None or time.monotonic() < deadline) and not stop.is_set():
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        if worker.poll() is not None:
            raise DevStackError(f"the worker exited with status {worker.returncode}; see its log")
        if callable(tick):
            tick()
        await asyncio.sleep(0.25)  # screen refresh pace


async def _traffic(settings: Settings, args: argparse.Namespace, view: View) -> None:
    now_ms = int(time.time() * 1000)
    config = simulator.SimConfig.ending(
        now_ms, args.history_days, customers=args.customers, seed=args.seed
    )
    async with AiokafkaPublisher(
        settings.broker_list, linger_ms=5, **aiokafka_config(settings)
    ) as pub:
        view.phase = f"replaying {args.history_days:g} days of history"
        batch: list[OutMessage] = []
        for event in simulator.history(config):
            batch.append(_message(settings, event))
            if len(batch) >= 1000:
                await pub.publish(batch)
                view.produced += len(batch)
                batch = []
        batch += [OutMessage(settings.input_topic, None, raw) for raw in BAD_EVENTS]
        await pub.publish(batch)
        view.produced += len(batch)
        view.phase = f"live traffic, {args.rate:g} events/s"
        async for event in simulator.paced(simulator.live(config, rate=args.rate), args.rate):
            await pub.publish([_message(settings, event)])
            view.produced += 1


def _message(settings: Settings, event: simulator.SimEvent) -> OutMessage:
    return OutMessage(settings.input_topic, event["customer_id"].encode(), jsonutil.dumps(event))


async def _follow(settings: Settings, view: View, console: Console, plain: bool) -> None:
    async for _k, value, _p, _o in consume(
        settings.broker_list, settings.output_topic, client_config=aiokafka_config(settings)
    ):
        line = view.on_change(jsonutil.loads(value))
        if plain:
            console.print(f"change: {line}", highlight=False, soft_wrap=True)


async def _follow_dlq(settings: Settings, view: View) -> None:
    async for _k, value, _p, _o in consume(
        settings.broker_list, settings.dlq_topic, client_config=aiokafka_config(settings)
    ):
        view.dead[jsonutil.loads(value)["reason"]] += 1


async def _nps(settings: Settings, model_name: str, view: View) -> None:
    client = connect(settings.redis_url)
    try:
        await poll_nps(StateStore(client, Keys(settings.key_prefix, model_name)), view)
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable.from_redis(exc) from None
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


class NpsSource(Protocol):
    async def nps_counts(self) -> dict[str, int]: ...


async def poll_nps(store: NpsSource, view: View, every_s: float = 2.0) -> None:
    """Keep the view's NPS figure fresh until cancelled."""
    while True:
        counts = await store.nps_counts()
        # redis-py's wait_for may have swallowed a Ctrl-C's cancellation (when the reply
        # arrives as the task is cancelled): without this the loop went on, and `dev`
        # never stopped
        raise_if_cancelled()
        by_cat = Counter[str]()
        for name, n in counts.items():
            _day, tier, cat = name.split("|")
            if tier == "*":
                by_cat[cat] += n
        view.responses = sum(by_cat.values())
        view.nps = nps(by_cat["promoter"], by_cat["passive"], by_cat["detractor"])
        await asyncio.sleep(every_s)  # refresh pace of a dashboard figure

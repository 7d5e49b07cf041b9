"""What each CLI subcommand does (``cli.py`` only parses arguments)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import IO, Any, cast

import redis.exceptions

from scoring import Model, load_model
from stream_app import jsonutil
from stream_app.errors import StreamAppError
from stream_app.http.readmodel import describe
from stream_app.kafka.auth import aiokafka_config
from stream_app.kafka.io import consume, produce_lines
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.records import decode_record
from stream_app.store.state import StoreUnavailable, connect

log = logging.getLogger("stream_app.cli.main")


def worker(args: argparse.Namespace) -> int:
    """Run the faust worker until it is stopped (SIGTERM / Ctrl-C)."""
    from stream_app.cli.start import run_worker

    return run_worker(Settings.from_env(), loop=args.loop)


def dev(args: argparse.Namespace) -> int:
    """The embedded default: everything local, simulated traffic, a live view."""
    from stream_app.devkit.stack import DevStackError

    try:
        from stream_app.devkit.live import run_dev
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "rich":  # the `demo` extra's terminal view
            raise
        raise DevStackError(
            f"`dev` needs the demo extra ({exc}): pip install 'engagement-scorer[demo]'"
        ) from None

    return run_dev(args)


def simulate(args: argparse.Namespace) -> int:
    """Simulated traffic to a JSON-lines file, or to the input topic."""
    from stream_app.devkit import simulator

    now_ms = int(time.time() * 1000)
    config = simulator.SimConfig.ending(now_ms, args.days, customers=args.customers, seed=args.seed)
    if args.rate is not None:
        events: Iterator[Any] = simulator.live(config, rate=args.rate)
    else:
        events = simulator.history(config)
        if args.events is not None:
            events = iter(simulator.take_events(config, args.events))
    if args.out is not None:
        with _open_out(args.out) as fp:
            n = simulator.write_jsonl(events, fp)
        print(f"wrote {n} events", file=sys.stderr)
        return 0
    settings = Settings.from_env()
    if args.rate is not None:
        return asyncio.run(_produce_live(settings, events, args.rate))
    lines = (jsonutil.dumps(e) for e in events)
    n = asyncio.run(
        produce_lines(
            settings.broker_list,
            settings.input_topic,
            lines,
            client_config=aiokafka_config(settings),
        )
    )
    print(f"produced {n} events to {settings.input_topic}", file=sys.stderr)
    return 0


async def _produce_live(settings: Settings, events: Iterator[Any], rate: float) -> int:
    from stream_app.devkit.simulator import paced
    from stream_app.kafka.io import AiokafkaPublisher
    from stream_app.messages import OutMessage

    n = 0
    async with AiokafkaPublisher(settings.broker_list, **aiokafka_config(settings)) as pub:
        async for event in paced(events, rate):
            key = event["customer_id"].encode()
            await pub.publish([OutMessage(settings.input_topic, key, jsonutil.dumps(event))])
            n += 1
    return 0


class FileUnusable(StreamAppError):
    """A file named on the command line cannot be opened."""


def _open(path: str, mode: str) -> IO[bytes]:
    try:
        return cast(IO[bytes], open(path, mode))
    except OSError as exc:
        raise FileUnusable(str(exc)) from None


@contextlib.contextmanager
def _open_out(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdout.buffer
    else:
        with _open(path, "wb") as fp:
            yield fp


def produce(args: argparse.Namespace) -> int:
    """Send a JSON-lines file (or stdin) to the input topic, keyed by customer."""
    from stream_app.devkit.simulator import read_jsonl

    settings = Settings.from_env()
    if args.file == "-":
        n = asyncio.run(
            produce_lines(
                settings.broker_list,
                settings.input_topic,
                read_jsonl(sys.stdin.buffer),
                keyed=not args.unkeyed,
                client_config=aiokafka_config(settings),
            )
        )
    else:
        with _open(args.file, "rb") as fp:
            n = asyncio.run(
                produce_lines(
                    settings.broker_list,
                    settings.input_topic,
                    read_jsonl(fp),
                    keyed=not args.unkeyed,
                    client_config=aiokafka_config(settings),
                )
            )
    print(f"produced {n} events to {settings.input_topic}", file=sys.stderr)
    return 0


def score(args: argparse.Namespace) -> int:
    """Print one customer's state as JSON (exit 1 if the customer is unknown, erased or
    merged into another)."""
    from stream_app.cli.lifecycle import status

    settings = Settings.from_env()
    model = load_model(settings.model_path)
    raw = asyncio.run(_read_state(settings, model, args.customer_id))
    if raw is None:
        gone = asyncio.run(status(settings, model, args.customer_id))
        cid = repr(args.customer_id)
        if gone is None:
            what = f"unknown customer {cid}"
        elif gone.kind == "suppressed":
            what = f"customer {cid} was erased"
        else:
            what = f"customer {cid} was merged into {gone.into!r}"
        print(f"engagement-scorer score: {what}", file=sys.stderr)
        return 1
    now_ms = time.time() * 1000 if args.now else None
    out = describe(args.customer_id, decode_record(raw), model, now_ms=now_ms)
    sys.stdout.buffer.write(jsonutil.dumps_line(out))
    return 0


async def _read_state(settings: Settings, model: Model, customer_id: str) -> bytes | None:
    client = connect(settings.redis_url)
    try:
        raw = await client.get(Keys(settings.key_prefix, model.name).state(customer_id))
        return raw.encode() if isinstance(raw, str) else raw
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable.from_redis(exc) from None
    finally:
        await client.aclose()


def tail(args: argparse.Namespace) -> int:
    """Print segment-change events (or dead letters) as JSON lines as they arrive."""
    settings = Settings.from_env()
    topic = settings.dlq_topic if args.dlq else settings.output_topic
    return asyncio.run(_tail(settings, topic, args))


async def _tail(settings: Settings, topic: str, args: argparse.Namespace) -> int:
    seen = 0
    async for _key, value, _p, _o in consume(
        settings.broker_list,
        topic,
        from_beginning=args.from_beginning,
        idle_timeout_s=args.idle_timeout,
        client_config=aiokafka_config(settings),
    ):
        sys.stdout.buffer.write(value + b"\n")
        sys.stdout.buffer.flush()
        seen += 1
        if args.max is not None and seen >= args.max:
            break
    return 0


def redrive(args: argparse.Namespace) -> int:
    """Re-produce dead letters to the input topic (``stream_app/cli/redrive.py``)."""
    from datetime import UTC, datetime

    from stream_app.cli.redrive import parse_since
    from stream_app.cli.redrive import redrive as run

    settings = Settings.from_env()
    model = load_model(settings.model_path)
    reasons = [r.strip() for given in args.reason for r in given.split(",") if r.strip()]
    since = parse_since(args.since, datetime.now(tz=UTC)) if args.since else None

    async def main() -> str:
        client = connect(settings.redis_url)
        try:
            report = await run(
                settings, client, Keys(settings.key_prefix, model.name), reasons=reasons,
                since=since, dry_run=args.dry_run, force=args.force,
                idle_timeout_s=args.idle_timeout,
            )  # fmt: skip
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable.from_redis(exc) from None
        finally:
            await client.aclose()
        return report.line()

    line = asyncio.run(main())
    print(("dry run: " if args.dry_run else "") + line, file=sys.stderr)
    return 0


def check_model(args: argparse.Namespace) -> int:
    """Validate a model file; print a summary of what it defines."""
    model = load_model(args.file)
    tiers = ", ".join(f"{t.name}>={t.threshold:g}" for t in model.tiers)
    print(f"model {model.name} v{model.version}: OK")
    print(f"  dimensions: {', '.join(model.dimensions)}")
    print(f"  event types: {len(model.event_types)} ({', '.join(sorted(model.event_types))})")
    print(f"  tiers: {tiers} (hysteresis {model.hysteresis:g})")
    print(f"  segments: {', '.join(r.name for r in model.segments) or '(none)'}")
    return 0

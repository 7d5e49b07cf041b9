"""``engagement-scorer model ...``: show, plan, shadow, promote, rollback, retire."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import redis.exceptions

from stream_app import jsonutil
from stream_app.errors import StreamAppError
from stream_app.models import admin
from stream_app.models.registry import ModelRegistry
from stream_app.models.status import Status, read_status
from stream_app.settings import Settings
from stream_app.store.keys import RegistryKeys
from stream_app.store.state import RedisClient, StoreUnavailable, connect

T = TypeVar("T")


class ModelFileUnusable(StreamAppError):
    """The model file named on the command line cannot be read."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``model`` and its subcommands to the top-level parser."""
    p = sub.add_parser("model", help="the scoring model in force: show, plan and change it")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="STEP")

    s = msub.add_parser("show", help="the model in force, the shadow if any, their progress")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=show)

    s = msub.add_parser("plan", help="what switching to NEW would change (reads the input once)")
    s.add_argument("file", metavar="NEW.toml")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--from-current",
        action="store_true",
        help="derive NEW from current states (tiers, hysteresis, segment rules only)",
    )
    s.add_argument("--examples", type=int, default=3, help="customers shown explained")
    s.set_defaults(func=plan)  # fmt: skip

    s = msub.add_parser("shadow", help="score NEW alongside the model in force, silently")
    s.add_argument("file", metavar="NEW.toml")
    s.add_argument(
        "--from-current",
        action="store_true",
        help="build it from the current states at once instead of a replay",
    )
    s.set_defaults(func=shadow)  # fmt: skip

    for name, text in (
        ("promote", "switch to the shadow, publishing the changes it makes (cause model)"),
        ("rollback", "switch back to the previous model the same way"),
    ):
        s = msub.add_parser(name, help=text)
        s.add_argument(
            "--wait-ready",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait this long for the shadow to catch up first",
        )
        s.add_argument(
            "--wait",
            type=float,
            default=120.0,
            metavar="SECONDS",
            help="how long to follow the switch until every partition is done",
        )
        s.set_defaults(func=promote if name == "promote" else rollback)  # fmt: skip

    s = msub.add_parser("retire", help="stop scoring the shadow (or the previous model)")
    s.add_argument("--keep-data", action="store_true", help="keep its keys in Redis")
    s.set_defaults(func=retire)


def _run(settings: Settings, work: Callable[[ModelRegistry, RedisClient], Awaitable[T]]) -> T:
    async def main() -> T:
        client = connect(settings.redis_url)
        try:
            return await work(ModelRegistry(client, RegistryKeys(settings.key_prefix)), client)
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable.from_redis(exc) from None
        finally:
            await client.aclose()

    return asyncio.run(main())


def _read(path: str) -> str:
    try:
        return Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileUnusable(f"{path}: {exc}") from None


def _emit(args: argparse.Namespace, text: str, data: object) -> None:
    if getattr(args, "json", False):
        sys.stdout.buffer.write(jsonutil.dumps_line(data))
    else:
        sys.stdout.write(text)
    sys.stdout.flush()


def show(args: argparse.Namespace) -> int:
    status = _run(Settings.from_env(), lambda reg, _c: read_status(reg))
    _emit(args, status.text(), status.as_json())
    return 0


def plan(args: argparse.Namespace) -> int:
    from stream_app.models.plan import build_plan
    from stream_app.models.render import plan_json, plan_text

    settings = Settings.from_env()
    text = _read(args.file)
    try:
        report = asyncio.run(
            build_plan(
                settings, text, args.file, from_current=args.from_current, examples=args.examples
            )
        )
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable.from_redis(exc) from None
    _emit(args, plan_text(report), plan_json(report))
    return 1 if report.comparison.refused else 0


def shadow(args: argparse.Namespace) -> int:
    text = _read(args.file)
    slot = _run(
        Settings.from_env(),
        lambda reg, _c: admin.add_shadow(reg, text, args.file, from_current=args.from_current),
    )
    how = (
        "derived from the current states at once"
        if slot.mode == "from-current"
        else "replayed from the input's earliest retained offset, then following live traffic"
    )
    print(
        f"shadow {slot.label} registered, namespace {slot.namespace}: the workers score it "
        f"silently, {how}. Follow it with `engagement-scorer model show`; compare with "
        "GET /v1/customers/{id}?model=shadow; then `engagement-scorer model promote`."
    )
    return 0


def promote(args: argparse.Namespace) -> int:
    return _switch(args, rollback=False)


def rollback(args: argparse.Namespace) -> int:
    return _switch(args, rollback=True)


def _switch(args: argparse.Namespace, *, rollback: bool) -> int:
    settings = Settings.from_env()

    async def work(reg: ModelRegistry, _client: RedisClient) -> tuple[admin.Switched, Status]:
        if args.wait_ready > 0:
            await admin.wait_for(reg, lambda s: s.shadow_ready, args.wait_ready)
        done = await admin.switch(reg, rollback=rollback, now_ms=time.time() * 1000.0)
        status = await admin.wait_for(reg, lambda s: s.switch_done, args.wait)
        return done, status

    done, status = _run(settings, work)
    verb = "rolled back" if rollback else "promoted"
    after = done.after
    print(
        f"{verb}: {after.active.label} is the model in force (epoch {after.epoch}); "
        f"{done.before.active.label} is kept up to date as the shadow until "
        "`engagement-scorer model retire`."
    )
    changes = sum(status.switched.values())
    if status.switch_done:
        print(f"every partition switched: {changes:,} model changes published (cause model)")
        return 0
    print(
        f"{status.cut_over()}/{status.partitions} partitions switched so far ({changes:,} model "
        "changes published); the workers finish it: follow with `engagement-scorer model show`"
    )
    return 3


def retire(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    slot, deleted = _run(
        settings,
        lambda reg, client: admin.retire(
            reg, client, settings.key_prefix, keep_data=args.keep_data
        ),
    )
    kept = "its data is kept" if args.keep_data else f"{deleted:,} keys deleted"
    print(f"retired {slot.label}: no longer scored; {kept}")
    return 0

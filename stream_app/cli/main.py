"""``engagement-scorer``: the command line (argument parsing and error reporting only)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from scoring import ScoringError
from stream_app import logs
from stream_app.cli import commands, lifecycle
from stream_app.errors import StreamAppError
from stream_app.settings import SettingsError

#: Errors the user can fix: reported in one line, exit status 2, no traceback.
USER_ERRORS = (StreamAppError, ScoringError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engagement-scorer",
        description="Real-time, time-decayed customer engagement scoring on Kafka + Redis.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("worker", help="run the production worker (configured by ENGAGEMENT_*)")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.set_defaults(func=commands.worker)

    p = sub.add_parser("dev", help="local broker + Redis + worker + simulated traffic, live view")
    p.add_argument("--customers", type=_positive_int, default=300)
    p.add_argument("--history-days", type=float, default=120.0)
    p.add_argument("--rate", type=_positive_float, default=25.0, help="live events per second")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        help="stop by itself after this many seconds (default: run until Ctrl-C)",
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="print one line per change instead of the live view (auto when not a TTY)",
    )
    p.add_argument(
        "--web-port",
        type=int,
        default=None,
        help="the worker's web port: dashboard, API, /metrics (default: 6066 if free)",
    )
    p.set_defaults(func=commands.dev)

    p = sub.add_parser("simulate", help="produce realistic simulated traffic (or write JSON lines)")
    p.add_argument("--customers", type=_positive_int, default=200)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--events", type=_positive_int, help="how many history events")
    group.add_argument("--rate", type=_positive_float, help="live events per second, until Ctrl-C")
    p.add_argument("--days", type=float, default=90.0, help="history window ending now")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", help="write JSON lines to this file ('-': stdout) instead of Kafka")
    p.set_defaults(func=commands.simulate)

    p = sub.add_parser("produce", help="send events from a JSON-lines file ('-': stdin)")
    p.add_argument("file")
    p.add_argument("--unkeyed", action="store_true", help="send without message keys")
    p.set_defaults(func=commands.produce)

    p = sub.add_parser("score", help="print a customer's state as JSON")
    p.add_argument("customer_id")
    p.add_argument("--now", action="store_true", help="also decay the values to the current time")
    p.set_defaults(func=commands.score)

    _lifecycle_commands(sub)

    p = sub.add_parser("tail", help="print segment-change events as they arrive")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--max", type=_positive_int, default=None, help="stop after this many")
    p.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=None,
        help="stop after this many seconds without a new event",
    )
    p.add_argument("--dlq", action="store_true", help="tail the dead-letter topic instead")
    p.set_defaults(func=commands.tail)

    p = sub.add_parser(
        "redrive", help="re-produce dead letters to the input topic once their cause is fixed"
    )
    p.add_argument(
        "--reason",
        action="append",
        default=[],
        help="only dead letters with this reason (repeatable, or comma-separated)",
    )
    p.add_argument(
        "--since", help="only dead letters received since: 2026-12-01T10:00:00Z, a date, or 2h"
    )
    p.add_argument("--dry-run", action="store_true", help="count what would be re-driven")
    p.add_argument("--force", action="store_true", help="also what was re-driven before")
    p.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=5.0,
        help="stop reading the dead-letter topic after this many seconds without a new one",
    )
    p.set_defaults(func=commands.redrive)

    p = sub.add_parser("check-model", help="validate a scoring model file and summarise it")
    p.add_argument("file")
    p.set_defaults(func=commands.check_model)
    return parser


def _lifecycle_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``erase`` and ``merge``: requests sent to the input topic."""
    p = sub.add_parser("erase", help="erase a customer everywhere (sends an erase request)")
    p.add_argument("customer_id")
    p.set_defaults(func=lifecycle.erase)

    p = sub.add_parser("merge", help="merge one customer into another (sends a merge request)")
    p.add_argument("from_id", metavar="FROM_ID", help="the customer merged away")
    p.add_argument("into_id", metavar="INTO_ID", help="the customer that remains")
    p.set_defaults(func=lifecycle.merge)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _version() -> str:
    try:
        return metadata.version("engagement-scorer")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        fmt = logs.log_format()
    except SettingsError as exc:
        print(logs.error_line(args.command, str(exc), "text"), file=sys.stderr)
        return 2
    logs.configure(fmt)
    if args.command not in ("worker", "dev"):
        # aiokafka logs each failed connection attempt; the one-line error below says it all
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except USER_ERRORS as exc:
        text = str(exc) or type(exc).__name__
        print(logs.error_line(args.command, text, fmt), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

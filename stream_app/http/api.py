"""The HTTP read API's logic: validation, auth and answers (``views.py`` routes to it).

Every handler returns ``(status, body)``; bodies are JSON-ready. Path and query
input is validated before it gets near Redis (customer ids by the event
contract's rules, segment names against the model, bounded ``limit`` and NPS
windows); keys are built by :mod:`stream_app.store.keys`, which escapes ids.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

from scoring import (
    CustomerState,
    InvalidEvent,
    InvalidState,
    Model,
    contributions_at,
    decode_explanation,
    decode_state,
    next_crossing,
    recent_at,
    validate_customer_id,
    values_at,
)
from stream_app.contracts import rfc3339
from stream_app.errors import StreamAppError
from stream_app.http.npsdaily import DAILY_DAYS, days_body, nps_body
from stream_app.http.timeline import DEFAULT_SAMPLES, MAX_SAMPLES, timeline
from stream_app.store.keys import Keys
from stream_app.store.nps import NpsCounters, days
from stream_app.store.readstore import ReadStore
from stream_app.store.records import LifecycleStatus
from stream_app.store.state import StateStore

Answer = tuple[int, dict[str, Any]]
log = logging.getLogger("stream_app.http")
#: What a client learns of a record that no longer decodes (details go to the log only).
UNREADABLE = (
    "the customer's stored record cannot be read by this model; its events are "
    "dead-lettered (corrupt_state) until an operator repairs or deletes it"
)
MAX_LIMIT = 1000
MAX_NPS_DAYS = 366
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def error(status: int, code: str, message: str) -> Answer:
    """A JSON error body."""
    return status, {"error": {"code": code, "message": message}}


class ApiError(StreamAppError):
    """A request the API refuses; ``answer`` is the JSON error to send, with ``headers``."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.answer = error(status, code, message)
        self.headers = dict(headers or {})


class Lookup(Protocol):
    """Whether customers without a record were erased or merged away
    (:class:`stream_app.store.lifecycle.LifecycleStore`)."""

    async def lookup(self, customer_ids: Sequence[str], /) -> dict[str, LifecycleStatus]:
        """Of these customers without a record, the erased and the merged-away ones."""
        ...


def authorized(header: str | None, tokens: Sequence[str]) -> bool:
    """True when no tokens are configured, or ``header`` is ``Bearer <one of them>``.

    Every configured token is compared in constant time. The scheme is case-insensitive
    (RFC 7235); a header that is not valid UTF-8 (aiohttp hands it over with surrogate
    escapes) is compared as the bytes received.

    >>> authorized(None, [])
    True
    >>> authorized("Bearer s3cret", ["other", "s3cret"])
    True
    >>> authorized("bearer s3cret", ["s3cret"])
    True
    >>> authorized("Bearer nope", ["s3cret"])
    False
    >>> authorized("Bearer \\udcff", ["s3cret"])  # the byte 0xff, as aiohttp decodes it
    False
    """
    if not tokens:
        return True
    if not header or header[:7].lower() != "bearer ":
        return False
    given = header[7:].strip().encode("utf-8", "surrogateescape")
    ok = False
    for token in tokens:
        ok |= hmac.compare_digest(given, token.encode())
    return ok


class ReadApi:
    """Answers for the /v1/ endpoints, over the worker's Redis state."""

    def __init__(
        self,
        model: Model,
        keys: Keys,
        store: StateStore,
        readstore: ReadStore,
        nps: NpsCounters,
        *,
        lifecycle: Lookup | None = None,
    ) -> None:
        self.model = model
        self.keys = keys
        self.store = store
        self.readstore = readstore
        self.counters = nps
        self.lifecycle = lifecycle

    async def customer(self, customer_id: str, now_ms: float | None = None) -> Answer:
        state, record_version, _ = await self._load(customer_id)
        now = time.time() * 1000 if now_ms is None else now_ms
        at_clock = values_at(state, self.model, state.clock_ms)
        at_now = values_at(state, self.model, max(now, state.clock_ms))
        crossing = next_crossing(state, self.model)
        nps_cat = state.nps_category
        return 200, {
            "customer_id": customer_id,
            "score": at_now.score,
            "dimensions": dict(at_now.dimensions),
            "at_clock": {"score": at_clock.score, "dimensions": dict(at_clock.dimensions)},
            "clock": rfc3339(state.clock_ms),
            "tier": state.tier_name(self.model),
            "segments": list(state.segment_names(self.model)),
            "nps": {
                "last_score": state.nps_score,
                "category": nps_cat,
                "answered_at": rfc3339(state.nps_at_ms) if state.nps_at_ms is not None else None,
            },
            "last_event_at": rfc3339(state.last_event_ms)
            if state.last_event_ms is not None
            else None,
            "events_applied": state.events_applied,
            "next_crossing": rfc3339(crossing) if crossing is not None else None,
            "model": self.model.name,
            "model_version": self.model.version,
            "version": record_version,
        }

    async def explain(self, customer_id: str, now_ms: float | None = None) -> Answer:
        state, _, raw_explain = await self._load(customer_id, "/explain")
        now = max(time.time() * 1000 if now_ms is None else now_ms, state.clock_ms)
        values = values_at(state, self.model, now)
        body: dict[str, Any] = {
            "customer_id": customer_id,
            "at": rfc3339(now),
            "score": values.score,
            "by_dimension": dict(values.dimensions),
            "by_event_type": {},
            "recent_events": [],
        }
        if raw_explain is not None:
            expl = decode_explanation(raw_explain, self.model)
            by_type = contributions_at(expl, self.model, now)
            body["by_event_type"] = dict(sorted(by_type.items(), key=lambda kv: -abs(kv[1])))
            body["recent_events"] = [
                {**row, "timestamp": rfc3339(float(str(row["timestamp_ms"])))}
                for row in recent_at(expl, self.model, now)
            ]
        return 200, body

    async def timeline(
        self, customer_id: str, query: Mapping[str, str], now_ms: float | None = None
    ) -> Answer:
        """The customer's score and dimensions over time (:mod:`stream_app.http.timeline`)."""
        samples = samples_param(query)
        state, _, raw_explain = await self._load(customer_id, "/timeline")
        expl = decode_explanation(raw_explain, self.model) if raw_explain is not None else None
        now = time.time() * 1000 if now_ms is None else now_ms
        return 200, timeline(customer_id, state, expl, self.model, now_ms=now, samples=samples)

    async def _load(
        self, customer_id: str, suffix: str = ""
    ) -> tuple[CustomerState, int, bytes | None]:
        try:
            validate_customer_id(customer_id)
        except InvalidEvent as exc:
            raise ApiError(400, "bad_customer_id", exc.detail) from None
        record = (await self.store.load([customer_id]))[customer_id]
        if record.fault is None and record.state is None:
            await self._gone(customer_id, suffix)
            raise ApiError(404, "unknown_customer", f"no state for customer {customer_id!r}")
        try:
            if record.fault is not None or record.state is None:
                raise InvalidState(record.fault[1] if record.fault else "no state")
            state = decode_state(record.state, self.model)
            if record.explain is not None:
                decode_explanation(record.explain, self.model)  # (unreadable: the same 409)
        except Exception:
            log.warning("customer %r: stored record unreadable", customer_id, exc_info=True)
            raise ApiError(409, "state_unreadable", UNREADABLE) from None
        return state, record.version, record.explain

    async def _gone(self, customer_id: str, suffix: str) -> None:
        """404 for an erased customer; 308 to the survivor for a merged-away one."""
        status = None
        if self.lifecycle is not None:
            status = (await self.lifecycle.lookup([customer_id])).get(customer_id)
        if status is None:
            return
        if status.kind == "suppressed":
            raise ApiError(404, "erased", f"customer {customer_id!r} was erased")
        into = status.into or ""
        location = f"/v1/customers/{quote(into, safe='')}{suffix}"
        raise ApiError(
            308, "merged", f"customer {customer_id!r} was merged into {into!r}",
            {"Location": location},
        )  # fmt: skip

    async def tiers(self, now_ms: float | None = None) -> Answer:
        now = time.time() * 1000 if now_ms is None else now_ms
        counts = await self.readstore.tier_counts(now)
        return 200, {
            "model": self.model.name,
            "at": rfc3339(now),
            "tiers": [{"name": t.name, "threshold": t.threshold, **counts[t.name]}
                      for t in self.model.tiers],
        }  # fmt: skip

    async def segments(self) -> Answer:
        counts = await self.readstore.segment_counts()
        return 200, {
            "model": self.model.name,
            "segments": [
                {"name": r.name, "customers": counts[r.name]} for r in self.model.segments
            ],
        }

    async def members(self, name: str, query: Mapping[str, str]) -> Answer:
        if name not in {r.name for r in self.model.segments}:
            return error(404, "unknown_segment", f"no segment {name!r} in model {self.model.name}")
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            return error(400, "bad_limit", "limit: must be an integer")
        if not 1 <= limit <= MAX_LIMIT:
            return error(400, "bad_limit", f"limit: must be between 1 and {MAX_LIMIT}")
        cursor = query.get("cursor") or None
        if cursor is not None:
            try:
                validate_customer_id(cursor)
            except InvalidEvent:
                return error(400, "bad_cursor", "cursor: not a cursor this API returned")
        page, nxt = await self.readstore.members(
            self.keys.segment_members(name), cursor=cursor, limit=limit
        )
        return 200, {"segment": name, "members": page, "next_cursor": nxt}

    async def nps(self, query: Mapping[str, str], today: date | None = None) -> Answer:
        today = today or datetime.now(tz=UTC).date()
        try:
            start = _day(query.get("from"), today - timedelta(days=29), "from")
            end = _day(query.get("to"), today, "to")
        except ValueError as exc:
            return error(400, "bad_window", str(exc))
        if end < start:
            return error(400, "bad_window", "to: must not be before from")
        if (end - start).days + 1 > MAX_NPS_DAYS:
            return error(400, "bad_window", f"window: at most {MAX_NPS_DAYS} days")
        by = query.get("by")
        if by not in (None, "", "tier"):
            return error(400, "bad_by", "by: only 'tier' is supported")
        tiers = [t.name for t in self.model.tiers] if by == "tier" else []
        counts = await self.counters.window(days(start, end), tiers)  # the window's fields only
        lo, hi = start.isoformat(), end.isoformat()
        groups: dict[str, Counter[str]] = {}
        for fld, n in counts.items():
            _, tier, cat = fld.split("|")
            groups.setdefault(tier, Counter())[cat] += n
        body: dict[str, Any] = {"from": lo, "to": hi, "overall": nps_body(groups.get("*"))}
        if by == "tier":
            body["by_tier"] = {t.name: nps_body(groups.get(t.name)) for t in self.model.tiers}
        return 200, body

    async def nps_daily(self, query: Mapping[str, str], today: date | None = None) -> Answer:
        """NPS per day of a window, overall and by tier (:mod:`stream_app.http.npsdaily`)."""
        try:
            start, end, by_tier = daily_window(query, today or datetime.now(tz=UTC).date())
        except ApiError as exc:
            return exc.answer
        tiers = [t.name for t in self.model.tiers] if by_tier else []
        counts = await self.counters.window(days(start, end), tiers)  # the window's fields only
        return 200, days_body(counts, self.model, start, end, by_tier=by_tier)


def daily_window(query: Mapping[str, str], today: date) -> tuple[date, date, bool]:
    """``from``, ``to`` and ``by=tier`` of ``GET /v1/nps/daily`` (default: the 90 days up to
    ``to``, which defaults to today); raises :class:`ApiError` as ``GET /v1/nps`` refuses:
    dates that are not ``YYYY-MM-DD`` calendar dates, ``to`` before ``from``, more than
    :data:`MAX_NPS_DAYS` days, ``by`` other than ``tier``."""
    try:
        end = _day(query.get("to"), today, "to")
        start = _day(query.get("from"), end - timedelta(days=DAILY_DAYS - 1), "from")
    except ValueError as exc:
        raise ApiError(400, "bad_window", str(exc)) from None
    if end < start:
        raise ApiError(400, "bad_window", "to: must not be before from")
    if (end - start).days + 1 > MAX_NPS_DAYS:
        raise ApiError(400, "bad_window", f"window: at most {MAX_NPS_DAYS} days")
    by = query.get("by")
    if by not in (None, "", "tier"):
        raise ApiError(400, "bad_by", "by: only 'tier' is supported")
    return start, end, by == "tier"


def samples_param(query: Mapping[str, str]) -> int:
    """The ``samples`` of ``GET /v1/customers/{id}/timeline`` (grid points), checked."""
    text = query.get("samples") or str(DEFAULT_SAMPLES)
    try:
        n = int(text)
    except ValueError:
        raise ApiError(400, "bad_samples", "samples: must be an integer") from None
    if not 2 <= n <= MAX_SAMPLES:
        raise ApiError(400, "bad_samples", f"samples: must be between 2 and {MAX_SAMPLES}")
    return n


def _day(text: str | None, default: date, name: str) -> date:
    if not text:
        return default
    if not _DAY.match(text):
        raise ValueError(f"{name}: must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: not a calendar date") from None

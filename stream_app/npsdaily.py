"""NPS per UTC day over a window, overall and by tier (``GET /v1/nps/daily``).

The worker counts every NPS answer on its UTC day of event time, per tier, in Redis
(``StateStore.nps_counts``: ``"<day>|<tier or *>|<category>" -> count``). This turns those
counters into one entry per day of the window, days without an answer included (their
``nps`` is null), so a chart has its whole axis.

>>> from datetime import date
>>> counts = {"2024-03-14|*|promoter": 3, "2024-03-14|*|detractor": 1,
...           "2024-03-14|warm|promoter": 3, "2024-03-14|cold|detractor": 1}
>>> days = daily(counts, date(2024, 3, 13), date(2024, 3, 14), "*")
>>> [(d["day"], d["nps"], d["responses"]) for d in days]
[('2024-03-13', None, 0), ('2024-03-14', 50, 4)]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from scoring import Model

from .api import MAX_NPS_DAYS, ApiError, _day, _nps_body

#: The window without ``from``: the 90 days up to ``to``.
DEFAULT_DAYS = 90


def window(query: Mapping[str, str], today: date) -> tuple[date, date]:
    """``from`` and ``to`` of the query (defaults: the 90 days up to today). Raises
    :class:`ApiError` for dates that are not ``YYYY-MM-DD`` calendar dates, ``to`` before
    ``from``, or more than :data:`MAX_NPS_DAYS` days (the rules of ``GET /v1/nps``)."""
    try:
        end = _day(query.get("to"), today, "to")
        start = _day(query.get("from"), end - timedelta(days=DEFAULT_DAYS - 1), "from")
    except ValueError as exc:
        raise ApiError(400, "bad_window", str(exc)) from None
    if end < start:
        raise ApiError(400, "bad_window", "to: must not be before from")
    if (end - start).days + 1 > MAX_NPS_DAYS:
        raise ApiError(400, "bad_window", f"window: at most {MAX_NPS_DAYS} days")
    return start, end


def daily(counts: Mapping[str, int], start: date, end: date, tier: str) -> list[dict[str, Any]]:
    """One NPS group per day from ``start`` to ``end`` for ``tier`` (``*``: overall)."""
    per_day: dict[str, Counter[str]] = {}
    lo, hi = start.isoformat(), end.isoformat()
    for name, n in counts.items():
        day, group, cat = name.split("|")
        if group == tier and lo <= day <= hi:
            per_day.setdefault(day, Counter())[cat] += n
    out = []
    for k in range((end - start).days + 1):
        day = (start + timedelta(days=k)).isoformat()
        out.append({"day": day, **_nps_body(per_day.get(day))})
    return out


def params(query: Mapping[str, str], today: date) -> tuple[date, date, bool]:
    """The window and whether ``by=tier`` was asked; raises :class:`ApiError`."""
    start, end = window(query, today)
    by = query.get("by")
    if by not in (None, "", "tier"):
        raise ApiError(400, "bad_by", "by: only 'tier' is supported")
    return start, end, by == "tier"


def days_body(
    counts: Mapping[str, int], model: Model, start: date, end: date, *, by_tier: bool
) -> dict[str, Any]:
    """The body of ``GET /v1/nps/daily``."""
    body: dict[str, Any] = {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "days": daily(counts, start, end, "*"),
    }
    if by_tier:
        body["by_tier"] = {t.name: daily(counts, start, end, t.name) for t in model.tiers}
    return body

"""NPS groups as JSON: one window's, and one per UTC day of a window (``GET /v1/nps/daily``).

The worker counts every NPS answer on its UTC day of event time, per tier, in Redis
(``NpsCounters.window``: ``"<day>|<tier or *>|<category>" -> count``). :func:`days_body`
turns those counters into one entry per day of the window, days without an answer included
(their ``nps`` is null), so a chart has its whole axis. Pure: the window is checked by
:func:`stream_app.http.api.daily_window`.

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

from scoring import Model, nps

#: The window of ``GET /v1/nps/daily`` without ``from``: the 90 days up to ``to``.
DAILY_DAYS = 90


def nps_body(c: Counter[str] | None) -> dict[str, Any]:
    """One NPS group: the score (None without answers) and its counts."""
    c = c or Counter()
    p, pa, d = c["promoter"], c["passive"], c["detractor"]
    return {"nps": nps(p, pa, d), "promoters": p, "passives": pa, "detractors": d,
            "responses": p + pa + d}  # fmt: skip


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
        out.append({"day": day, **nps_body(per_day.get(day))})
    return out


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

"""The scoring model: event weights, dimensions, tiers and segment rules.

A model is a TOML file (see ``docs/scoring.md`` and ``scoring/models/default.toml``),
validated when loaded: every error is an :class:`~scoring.errors.InvalidModel` whose
message starts with the dotted key and states the rule, e.g.
``events.email_open.points: must be a number``. Segment rules are data; nothing in the
file is ever evaluated as code.

>>> model = load_default_model()
>>> model.name, model.tier_names, model.hysteresis
('default', ('cold', 'warm', 'hot'), 0.1)
>>> model.event_types["email_open"]
EventType(name='email_open', points=1.0, dimension='email', max_per_day=5)
>>> parse_model({
...     "model": {"name": "tiny", "version": 1, "half_life_days": 30},
...     "tiers": {"cold": 0},
...     "events": {"email_open": {"points": "1", "dimension": "email"}},
... }, "tiny.toml")
Traceback (most recent call last):
...
scoring.errors.InvalidModel: events.email_open.points: must be a number (in tiny.toml)
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, NoReturn

from scoring.errors import InvalidModel
from scoring.metrics import ANY, KINDS, resolve
from scoring.plan import Plan, build_plan
from scoring.rules import OPS, Condition, SegmentRule
from scoring.tiers import Tier
from scoring.timeline import DAY_MS

__all__ = [
    "CAP_WINDOW_DAYS",
    "DAY_MS",
    "EventType",
    "Model",
    "default_model_path",
    "load_default_model",
    "load_model",
    "parse_model",
    "parse_model_text",
]

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", re.ASCII)
#: Default of ``[model] cap_window_days``: cap counters are kept for the clock's UTC
#: day and this many days before it.
CAP_WINDOW_DAYS = 3
#: The largest ``cap_window_days``.
MAX_CAP_WINDOW_DAYS = 366


@dataclass(frozen=True, slots=True)
class EventType:
    """An event type: ``points`` added to ``dimension``, at most ``max_per_day`` a day."""

    name: str
    points: float
    dimension: str
    max_per_day: int | None = None


class Model:
    """A validated scoring model and its :class:`~scoring.plan.Plan`, built here once.

    Build it with :func:`parse_model` or :func:`load_model`; the constructor checks
    the invariants the parser's messages explain. Two models are equal when their
    data (the constructor's arguments) are.
    """

    def __init__(
        self,
        *,
        name: str,
        version: int,
        half_life_days: float,
        dimensions: tuple[str, ...],
        dimension_half_life_days: Mapping[str, float],
        event_types: Mapping[str, EventType],
        tiers: tuple[Tier, ...],
        hysteresis: float,
        segments: tuple[SegmentRule, ...],
        cap_window_days: int = CAP_WINDOW_DAYS,
    ) -> None:
        if list(dimensions) != sorted(set(dimensions)):
            raise InvalidModel("dimensions: must be sorted and unique")
        if not tiers or tiers[0].threshold != 0:
            raise InvalidModel("tiers: the first tier's threshold must be 0")
        if type(cap_window_days) is not int or not 0 <= cap_window_days <= MAX_CAP_WINDOW_DAYS:
            raise InvalidModel(f"model.cap_window_days: {_CAP_WINDOW_RULE}")
        half_lives, events = dict(dimension_half_life_days), dict(event_types)
        for et in events.values():
            if et.dimension not in half_lives:
                raise InvalidModel(f"events.{et.name}.dimension: unknown dimension")
        if set(half_lives) != set(dimensions):
            raise InvalidModel("dimensions: every dimension needs a half-life")
        half_lives_ms = tuple(half_lives[d] * DAY_MS for d in dimensions)
        if not all(0 < h < math.inf for h in half_lives_ms):
            raise InvalidModel(f"dimensions: a half-life must be > 0 and {_MAX_HALF_LIFE}")
        tracked: set[str] = set()
        for rule in segments:
            for c in rule.conditions:
                metric = resolve(c.metric, dimensions, events)
                if metric is None:
                    raise InvalidModel(f"segments.{rule.name}: unknown metric {c.metric!r}")
                event_type = metric.tracked(c.arg)
                if event_type is not None:
                    tracked.add(event_type)
        #: The model's data, as given.
        self.name: Final = name
        self.version: Final = version
        self.half_life_days: Final = half_life_days
        self.dimensions: Final = dimensions
        self.dimension_half_life_days: Final[Mapping[str, float]] = MappingProxyType(
            {d: half_lives[d] for d in dimensions}
        )
        self.event_types: Final[Mapping[str, EventType]] = MappingProxyType(events)
        self.tiers: Final = tiers
        self.hysteresis: Final = hysteresis
        self.segments: Final = segments
        #: Cap counters are kept for the clock's UTC day and this many days before it; a
        #: capped type's event on an older day (a late event) adds nothing.
        self.cap_window_days: Final = cap_window_days
        #: Half-life in ms of each dimension, in ``dimensions`` order.
        self.half_lives_ms: Final = half_lives_ms
        #: Event types whose last time a rule needs (``days_since.*``), sorted; may hold ``any``.
        self.tracked: Final = tuple(sorted(tracked))
        #: Event type names, sorted: the index used by compact state encodings.
        self.event_type_names: Final = tuple(sorted(events))
        #: Lookup tables for the hot paths.
        self.plan: Final[Plan] = build_plan(
            dimensions=dimensions,
            half_lives_ms=half_lives_ms,
            event_dimensions={t: et.dimension for t, et in events.items()},
            event_type_names=self.event_type_names,
            tracked=self.tracked,
            tiers=tiers,
            hysteresis=hysteresis,
            segments=segments,
        )

    def _data(self) -> tuple[object, ...]:
        return (
            self.name,
            self.version,
            self.half_life_days,
            self.dimensions,
            self.dimension_half_life_days,
            self.event_types,
            self.tiers,
            self.hysteresis,
            self.segments,
            self.cap_window_days,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Model):
            return NotImplemented
        return self._data() == other._data()

    def __hash__(self) -> int:
        return hash((self.name, self.version, self.dimensions, self.tiers, self.segments))

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, version={self.version!r})"

    def half_life_ms(self, dimension: str) -> float:
        """The half-life of ``dimension`` in milliseconds."""
        return self.dimension_half_life_days[dimension] * DAY_MS

    def dimension_index(self, dimension: str) -> int:
        """Position of ``dimension`` in :attr:`dimensions` (and in state values)."""
        return self.dimensions.index(dimension)

    @property
    def tier_names(self) -> tuple[str, ...]:
        """Tier names, lowest first."""
        return tuple(t.name for t in self.tiers)

    @property
    def segment_names(self) -> tuple[str, ...]:
        """Segment rule names in file order (the bit order of state segment masks)."""
        return tuple(r.name for r in self.segments)


#: The longest half-life: its milliseconds must be a finite float.
_MAX_HALF_LIFE = "at most about 2e300 days"
_CAP_WINDOW_RULE = f"must be an integer from 0 to {MAX_CAP_WINDOW_DAYS}"


# --------------------------------------------------------------------------- loading


def default_model_path() -> pathlib.Path:
    """``scoring/models/default.toml``, shipped with the package."""
    return pathlib.Path(__file__).with_name("models") / "default.toml"


def load_default_model() -> Model:
    """The shipped default model."""
    return load_model(default_model_path())


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read and validate a model file (the only I/O in :mod:`scoring`)."""
    source = os.fspath(path)
    try:
        text = pathlib.Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidModel(f"{source}: cannot read model file: {exc}") from exc
    return parse_model_text(text, source)


def parse_model_text(text: str, source: str) -> Model:
    """Parse TOML text; syntax errors are :class:`InvalidModel` too."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidModel(f"{source}: invalid TOML: {exc}") from exc
    return parse_model(data, source)


def parse_model(data: Mapping[str, object], source: str = "<model>") -> Model:
    """Validate a decoded TOML document and build the :class:`Model`."""
    return _Parser(source).model(data)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class _Parser:
    source: str

    def fail(self, key: str, rule: str) -> NoReturn:
        raise InvalidModel(f"{key}: {rule} (in {self.source})")

    def table(self, value: object, key: str) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            self.fail(key, "must be a table")
        return value

    def keys(
        self,
        table: Mapping[str, object],
        key: str,
        required: tuple[str, ...],
        optional: tuple[str, ...],
    ) -> None:
        allowed = required + optional
        for name in table:
            if name not in allowed:
                self.fail(f"{key}.{name}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for name in required:
            if name not in table:
                self.fail(f"{key}.{name}", "missing required key")

    def number(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, "must be a number")
        if not math.isfinite(value):
            self.fail(key, "must be a finite number")
        return float(value)

    def positive(self, value: object, key: str) -> float:
        number = self.number(value, key)
        if number <= 0:
            self.fail(key, "must be greater than 0")
        return number

    def half_life(self, value: object, key: str) -> float:
        days = self.positive(value, key)
        if not math.isfinite(days * DAY_MS):
            self.fail(key, f"must be {_MAX_HALF_LIFE}")
        return days

    def name(self, value: object, key: str, what: str) -> str:
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            self.fail(
                key,
                f"{what} must be 1-64 letters, digits, '_' or '-', starting with a letter or '_'",
            )
        return value

    def model(self, data: Mapping[str, object]) -> Model:
        for top in data:
            if top not in ("model", "dimensions", "tiers", "events", "segments"):
                self.fail(
                    top, "unknown table (allowed: dimensions, events, model, segments, tiers)"
                )
        for top in ("model", "tiers", "events"):
            if top not in data:
                self.fail(top, "missing required table")
        head = self.table(data["model"], "model")
        self.keys(head, "model", ("name", "version", "half_life_days"), ("cap_window_days",))
        name = self.name(head["name"], "model.name", "a model name")
        version = head["version"]
        if type(version) is not int or version < 1:
            self.fail("model.version", "must be a positive integer")
        default_half_life = self.half_life(head["half_life_days"], "model.half_life_days")
        cap_window = head.get("cap_window_days", CAP_WINDOW_DAYS)
        if type(cap_window) is not int or not 0 <= cap_window <= MAX_CAP_WINDOW_DAYS:
            self.fail("model.cap_window_days", _CAP_WINDOW_RULE)
        half_lives = self.dimensions(data.get("dimensions", {}), default_half_life)
        events = self.events(self.table(data["events"], "events"))
        for et in events.values():
            half_lives.setdefault(et.dimension, default_half_life)
        tiers, hysteresis = self.tiers(self.table(data["tiers"], "tiers"))
        dims = tuple(sorted(half_lives))
        segments = self.segments(data.get("segments", {}), dims, events)
        return Model(
            name=name,
            version=version,
            half_life_days=default_half_life,
            dimensions=dims,
            dimension_half_life_days=half_lives,
            event_types=events,
            tiers=tiers,
            hysteresis=hysteresis,
            segments=segments,
            cap_window_days=cap_window,
        )

    def dimensions(self, value: object, default: float) -> dict[str, float]:
        half_lives: dict[str, float] = {}
        for dim, raw in self.table(value, "dimensions").items():
            key = f"dimensions.{dim}"
            self.name(dim, key, "a dimension name")
            spec = self.table(raw, key)
            self.keys(spec, key, (), ("half_life_days",))
            half_life = spec.get("half_life_days", default)
            half_lives[dim] = self.half_life(half_life, f"{key}.half_life_days")
        return half_lives

    def events(self, table: Mapping[str, object]) -> dict[str, EventType]:
        if not table:
            self.fail("events", "must define at least one event type")
        events: dict[str, EventType] = {}
        for event_name, raw in table.items():
            key = f"events.{event_name}"
            self.name(event_name, key, "an event type name")
            if event_name == ANY:
                self.fail(key, "'any' is reserved (days_since.any)")
            spec = self.table(raw, key)
            self.keys(spec, key, ("points", "dimension"), ("max_per_day",))
            points = self.number(spec["points"], f"{key}.points")
            dimension = self.name(spec["dimension"], f"{key}.dimension", "a dimension name")
            cap = spec.get("max_per_day")
            if cap is not None and (type(cap) is not int or cap < 1):
                self.fail(f"{key}.max_per_day", "must be a positive integer")
            events[event_name] = EventType(event_name, points, dimension, cap)
        return events

    def tiers(self, table: Mapping[str, object]) -> tuple[tuple[Tier, ...], float]:
        hysteresis = 0.0
        tiers: list[Tier] = []
        for tier_name, value in table.items():
            key = f"tiers.{tier_name}"
            if tier_name == "hysteresis":
                hysteresis = self.number(value, key)
                if not 0 <= hysteresis < 1:
                    self.fail(key, "must be between 0 and 1 (0 <= hysteresis < 1)")
                continue
            self.name(tier_name, key, "a tier name")
            threshold = self.number(value, key)
            if not tiers and threshold != 0:
                self.fail(key, "the first (lowest) tier's threshold must be 0")
            if tiers and threshold <= tiers[-1].threshold:
                previous = tiers[-1]
                self.fail(
                    key,
                    "thresholds must be strictly ascending "
                    f"(previous tier {previous.name} = {previous.threshold:g})",
                )
            tiers.append(Tier(tier_name, threshold))
        if not tiers:
            self.fail("tiers", "must define at least one tier (the first at threshold 0)")
        return tuple(tiers), hysteresis

    def segments(
        self, value: object, dims: tuple[str, ...], events: Mapping[str, EventType]
    ) -> tuple[SegmentRule, ...]:
        rules: list[SegmentRule] = []
        for rule_name, raw in self.table(value, "segments").items():
            key = f"segments.{rule_name}"
            self.name(rule_name, key, "a segment name")
            spec = self.table(raw, key)
            self.keys(spec, key, (), ("all", "any"))
            if len(spec) != 1:
                self.fail(key, "needs exactly one of 'all' or 'any'")
            mode: Literal["all", "any"] = "all" if "all" in spec else "any"
            items = spec[mode]
            if not isinstance(items, list) or not items:
                self.fail(f"{key}.{mode}", "must be a non-empty list of conditions")
            conditions = tuple(
                self.condition(item, f"{key}.{mode}[{i}]", dims, events)
                for i, item in enumerate(items)
            )
            rules.append(SegmentRule(rule_name, mode, conditions))
        return tuple(rules)

    def condition(
        self, item: object, key: str, dims: tuple[str, ...], events: Mapping[str, EventType]
    ) -> Condition:
        spec = self.table(item, key)
        self.keys(spec, key, ("metric", "op", "value"), ())
        metric, op, value = spec["metric"], spec["op"], spec["value"]
        kind = resolve(metric, dims, events) if isinstance(metric, str) else None
        if kind is None:
            spelled = ", ".join(m.spelling for m in KINDS.values())
            self.fail(f"{key}.metric", f"unknown metric {metric!r} ({spelled})")
        assert isinstance(metric, str)
        if not isinstance(op, str) or op not in OPS:
            self.fail(f"{key}.op", f"unknown operator {op!r} (one of {' '.join(OPS)})")
        if kind.categories is not None:
            if op not in ("==", "!="):
                self.fail(f"{key}.op", f"{metric} only supports == and !=")
            if not isinstance(value, str) or value not in kind.categories:
                self.fail(f"{key}.value", f"must be one of {', '.join(kind.categories)}")
            return Condition(metric, op, value)
        return Condition(metric, op, self.number(value, f"{key}.value"))

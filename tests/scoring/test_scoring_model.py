"""Scoring model file (issue §2): the default model and every kind of bad file."""

# ruff: noqa: E501

from __future__ import annotations

import copy
import pathlib
import re
from typing import Any

import pytest

from scoring.errors import InvalidModel
from scoring.model import (
    EventType,
    Model,
    default_model_path,
    load_default_model,
    load_model,
    parse_model,
    parse_model_text,
)
from scoring.rules import Condition, SegmentRule
from scoring.tiers import Tier

DEFAULT_TYPES = {
    "email_open",
    "email_click",
    "email_unsubscribe",
    "content_download",
    "webinar_attended",
    "loyalty_join",
    "loyalty_earn",
    "loyalty_redeem",
    "survey_completed",
    "review_submitted",
    "nps_response",
    "contest_entry",
    "web_visit",
    "social_share",
}

GOOD: dict[str, Any] = {
    "model": {"name": "m", "version": 1, "half_life_days": 30},
    "dimensions": {"email": {"half_life_days": 14}},
    "tiers": {"cold": 0, "warm": 20, "hot": 60, "hysteresis": 0.1},
    "events": {
        "email_open": {"points": 1, "dimension": "email", "max_per_day": 5},
        "web_visit": {"points": 0.5, "dimension": "web"},
    },
    "segments": {
        "s": {"all": [{"metric": "dimension.web", "op": ">=", "value": 10}]},
    },
}


def test_default_model(default_model: Model) -> None:
    m = default_model
    assert (m.name, m.version, m.half_life_days) == ("default", 1, 30.0)
    assert set(m.event_types) == DEFAULT_TYPES
    assert m.dimensions == ("content", "email", "feedback", "loyalty", "social", "web")
    assert m.dimension_half_life_days["email"] == 14
    assert m.tiers == (Tier("cold", 0), Tier("warm", 20), Tier("hot", 60))
    assert m.hysteresis == 0.1
    assert m.event_types["email_open"].max_per_day == 5
    assert m.event_types["web_visit"].max_per_day == 10
    assert m.event_types["email_unsubscribe"].points < 0
    names = m.segment_names
    assert "web_active_loyalty_dormant" in names and len(names) >= 3
    modes = {r.mode for r in m.segments}
    metrics = {c.metric for r in m.segments for c in r.conditions}
    assert modes == {"all", "any"}
    assert "nps.category" in metrics
    assert m.segments[0].conditions == (
        Condition("dimension.web", ">=", 10.0),
        Condition("days_since.loyalty_earn", ">=", 30.0),
    )


def test_default_model_path_and_loaders(default_model: Model) -> None:
    path = default_model_path()
    assert path.name == "default.toml" and path.parent.name == "models"
    assert load_model(path) == default_model == load_default_model()
    assert load_model(str(path)) == default_model
    assert hash(default_model) == hash(load_default_model())


def test_the_default_file_is_commented() -> None:
    text = default_model_path().read_text()
    for name in DEFAULT_TYPES:
        block = text.split(f"[events.{name}]")[1].split("[")[0]
        assert "points" in block
    assert text.count("#") > 30


def test_a_good_model_and_derived_fields() -> None:
    m = parse_model(GOOD)
    assert m.dimensions == ("email", "web")  # declared or used, sorted
    assert m.half_life_ms("email") == 14 * 86_400_000
    assert m.half_life_ms("web") == 30 * 86_400_000  # the model default
    assert m.half_lives_ms == (14 * 86_400_000, 30 * 86_400_000)
    assert m.event_types["web_visit"] == EventType("web_visit", 0.5, "web", None)
    assert m.tier_names == ("cold", "warm", "hot")
    assert m.tracked == ()
    assert m.dimension_index("web") == 1
    with pytest.raises(TypeError):
        m.event_types["x"] = EventType("x", 1, "web")  # type: ignore[index]


def test_optional_tables_and_keys() -> None:
    data = copy.deepcopy(GOOD)
    del data["dimensions"], data["segments"], data["tiers"]["hysteresis"]
    m = parse_model(data)
    assert m.segments == () and m.hysteresis == 0.0 and m.cap_window_days == 3
    data["model"]["cap_window_days"] = 8
    assert parse_model(data).cap_window_days == 8 and parse_model(data) != m
    data["tiers"] = {"only": 0}
    assert parse_model(data).tier_names == ("only",)


def test_tracked_event_types() -> None:
    data = copy.deepcopy(GOOD)
    data["segments"]["t"] = {
        "any": [
            {"metric": "days_since.web_visit", "op": ">", "value": 3},
            {"metric": "days_since.any", "op": "<", "value": 1},
        ]
    }
    assert parse_model(data).tracked == ("any", "web_visit")


def with_(path: str, value: Any) -> dict[str, Any]:
    """GOOD with the dotted ``path`` set to ``value`` (DELETE removes it)."""
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


DELETE = object()
COND = "segments.s.all.0"

BAD_MODELS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown top table", with_("scoring", {}), "scoring: unknown table"),
    ("missing model", with_("model", DELETE), "model: missing required table"),
    ("missing tiers", with_("tiers", DELETE), "tiers: missing required table"),
    ("missing events", with_("events", DELETE), "events: missing required table"),
    ("model not a table", with_("model", 3), "model: must be a table"),
    ("model typo", with_("model.nmae", "x"), "model.nmae: unknown key"),
    ("missing name", with_("model.name", DELETE), "model.name: missing required key"),
    ("bad name", with_("model.name", "my model"), "model.name: a model name must be"),
    ("version str", with_("model.version", "1"), "model.version: must be a positive integer"),
    ("version 0", with_("model.version", 0), "model.version: must be a positive integer"),
    ("version bool", with_("model.version", True), "model.version: must be a positive integer"),
    ("half-life 0", with_("model.half_life_days", 0), "model.half_life_days: must be greater"),
    *(
        (
            f"cap window {v!r}",
            with_("model.cap_window_days", v),
            "model.cap_window_days: must be an",
        )
        for v in (-1, 367, 2.5, "3", True)
    ),
    ("half-life neg", with_("model.half_life_days", -3), "model.half_life_days: must be greater"),
    (
        "half-life inf",
        with_("model.half_life_days", float("inf")),
        "model.half_life_days: must be a finite",
    ),
    (
        "half-life nan",
        with_("model.half_life_days", float("nan")),
        "model.half_life_days: must be a finite",
    ),
    ("half-life str", with_("model.half_life_days", "30"), "model.half_life_days: must be a num"),
    (
        "half-life beyond float ms",
        with_("dimensions.email.half_life_days", 1e306),
        "dimensions.email.half_life_days: must be at most about 2e300 days",
    ),
    ("dim typo", with_("dimensions.email.half_life", 3), "dimensions.email.half_life: unknown key"),
    ("dim hl 0", with_("dimensions.email.half_life_days", 0), "dimensions.email.half_life_days: "),
    ("dim not table", with_("dimensions.email", 14), "dimensions.email: must be a table"),
    ("dim bad name", with_("dimensions.e mail", {}), "dimensions.e mail: a dimension name"),
    ("no events", with_("events", {}), "events: must define at least one event type"),
    (
        "points str",
        with_("events.email_open.points", "1"),
        "events.email_open.points: must be a number",
    ),
    (
        "points bool",
        with_("events.email_open.points", True),
        "events.email_open.points: must be a number",
    ),
    (
        "points nan",
        with_("events.email_open.points", float("nan")),
        "events.email_open.points: must be a finite",
    ),
    (
        "no points",
        with_("events.email_open.points", DELETE),
        "events.email_open.points: missing required key",
    ),
    (
        "no dimension",
        with_("events.email_open.dimension", DELETE),
        "events.email_open.dimension: missing",
    ),
    (
        "dimension int",
        with_("events.email_open.dimension", 1),
        "events.email_open.dimension: a dimension name",
    ),
    (
        "event typo",
        with_("events.email_open.max_per_dya", 1),
        "events.email_open.max_per_dya: unknown key",
    ),
    (
        "cap 0",
        with_("events.email_open.max_per_day", 0),
        "events.email_open.max_per_day: must be a positive integer",
    ),
    (
        "cap float",
        with_("events.email_open.max_per_day", 2.5),
        "events.email_open.max_per_day: must be a positive",
    ),
    (
        "cap bool",
        with_("events.email_open.max_per_day", True),
        "events.email_open.max_per_day: must be a positive",
    ),
    (
        "event any",
        with_("events.any", {"points": 1, "dimension": "x"}),
        "events.any: 'any' is reserved",
    ),
    (
        "event bad name",
        with_("events.3d", {"points": 1, "dimension": "x"}),
        "events.3d: an event type name",
    ),
    ("event not table", with_("events.email_open", 1), "events.email_open: must be a table"),
    ("hysteresis 1", with_("tiers.hysteresis", 1), "tiers.hysteresis: must be between 0 and 1"),
    (
        "hysteresis neg",
        with_("tiers.hysteresis", -0.1),
        "tiers.hysteresis: must be between 0 and 1",
    ),
    ("hysteresis str", with_("tiers.hysteresis", "0.1"), "tiers.hysteresis: must be a number"),
    ("tier str", with_("tiers.warm", "20"), "tiers.warm: must be a number"),
    ("tier bool", with_("tiers.warm", True), "tiers.warm: must be a number"),
    (
        "first not 0",
        with_("tiers.cold", 5),
        "tiers.cold: the first (lowest) tier's threshold must be 0",
    ),
    ("not ascending", with_("tiers.hot", 20), "tiers.hot: thresholds must be strictly ascending"),
    ("descending", with_("tiers.hot", 10), "tiers.hot: thresholds must be strictly ascending"),
    ("no tiers", with_("tiers", {"hysteresis": 0.1}), "tiers: must define at least one tier"),
    ("tier bad name", with_("tiers.very warm", 30), "tiers.very warm: a tier name"),
    (
        "segment both",
        with_("segments.s.any", [{"metric": "score", "op": ">", "value": 1}]),
        "segments.s: needs exactly one",
    ),
    ("segment neither", with_("segments.s", {}), "segments.s: needs exactly one"),
    ("segment typo", with_("segments.s.al", []), "segments.s.al: unknown key"),
    ("segment empty", with_("segments.s.all", []), "segments.s.all: must be a non-empty list"),
    (
        "segment not list",
        with_("segments.s.all", {"metric": "score"}),
        "segments.s.all: must be a non-empty",
    ),
    ("cond not table", with_(COND, "score > 1"), "segments.s.all[0]: must be a table"),
    ("cond typo", with_(f"{COND}.vlaue", 1), "segments.s.all[0].vlaue: unknown key"),
    ("cond no op", with_(f"{COND}.op", DELETE), "segments.s.all[0].op: missing required key"),
    (
        "metric unknown",
        with_(f"{COND}.metric", "clicks"),
        "segments.s.all[0].metric: unknown metric 'clicks'",
    ),
    (
        "metric dim",
        with_(f"{COND}.metric", "dimension.phone"),
        "segments.s.all[0].metric: unknown metric",
    ),
    (
        "metric days",
        with_(f"{COND}.metric", "days_since.login"),
        "segments.s.all[0].metric: unknown metric",
    ),
    (
        "metric score.x",
        with_(f"{COND}.metric", "score.x"),
        "segments.s.all[0].metric: unknown metric",
    ),
    (
        "metric nps",
        with_(f"{COND}.metric", "nps.score"),
        "segments.s.all[0].metric: unknown metric",
    ),
    ("metric int", with_(f"{COND}.metric", 3), "segments.s.all[0].metric: unknown metric"),
    ("op unknown", with_(f"{COND}.op", "=>"), "segments.s.all[0].op: unknown operator '=>'"),
    ("op code", with_(f"{COND}.op", "__import__('os')"), "segments.s.all[0].op: unknown operator"),
    ("value str", with_(f"{COND}.value", "10"), "segments.s.all[0].value: must be a number"),
    ("value bool", with_(f"{COND}.value", False), "segments.s.all[0].value: must be a number"),
    (
        "value inf",
        with_(f"{COND}.value", float("inf")),
        "segments.s.all[0].value: must be a finite",
    ),
    ("segment bad name", with_("segments.a b", {"all": []}), "segments.a b: a segment name"),
]


def nps_condition(op: str, value: object) -> dict[str, Any]:
    return with_(COND, {"metric": "nps.category", "op": op, "value": value})


BAD_MODELS += [
    ("nps op", nps_condition(">=", "promoter"), "segments.s.all[0].op: nps.category only supports == and !="),
    ("nps value", nps_condition("==", "fan"), "segments.s.all[0].value: must be one of promoter, passive, detractor"),
    ("nps value int", nps_condition("==", 9), "segments.s.all[0].value: must be one of"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "data", "message"), BAD_MODELS, ids=[c for c, _, _ in BAD_MODELS])
def test_bad_models_name_the_key(case: str, data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidModel) as info:
        parse_model(data, "bad.toml")
    text = str(info.value)
    assert text.startswith(message), text  # the dotted key first, then the rule
    assert text.endswith("(in bad.toml)")


def test_good_variants_of_each_metric_and_op() -> None:
    ops = ["<", "<=", ">", ">=", "==", "!="]
    metrics = ["score", "dimension.email", "days_since.web_visit", "days_since.any"]
    conditions = [{"metric": m, "op": op, "value": 1} for m in metrics for op in ops]
    conditions += [{"metric": "nps.category", "op": op, "value": "passive"} for op in ("==", "!=")]
    m = parse_model(with_("segments.s.all", conditions))
    assert len(m.segments[0].conditions) == len(conditions)


def test_toml_syntax_errors_are_invalid_model() -> None:
    with pytest.raises(InvalidModel, match=r"^x\.toml: invalid TOML"):
        parse_model_text("[model\nname = 1", "x.toml")


def test_a_full_toml_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        """
        [model]
        name = "m"
        version = 2
        half_life_days = 10.5
        [tiers]
        low = 0
        high = 1e2
        [events.click]
        points = -2.5
        dimension = "d"
        [segments.neg]
        any = [ { metric = "score", op = "<", value = 0 } ]
        """
    )
    m = load_model(path)
    assert (m.version, m.half_life_days, m.tiers[1].threshold) == (2, 10.5, 100.0)
    assert m.event_types["click"].points == -2.5


def test_unreadable_files(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidModel, match="cannot read model file"):
        load_model(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"# caf\xe9\n")
    with pytest.raises(InvalidModel, match="cannot read model file"):
        load_model(bad)


def test_no_code_is_ever_evaluated(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    data = with_(COND, {"metric": "score", "op": ">", "value": 1})
    data["segments"]["s"]["all"][0]["metric"] = f"__import__('pathlib').Path('{marker}').touch()"
    with pytest.raises(InvalidModel, match="unknown metric"):
        parse_model(data)
    assert not marker.exists()


def test_model_construction_checks_invariants() -> None:
    good = parse_model(GOOD)
    fields = {
        "name": good.name,
        "version": good.version,
        "half_life_days": good.half_life_days,
        "dimensions": good.dimensions,
        "dimension_half_life_days": good.dimension_half_life_days,
        "event_types": good.event_types,
        "tiers": good.tiers,
        "hysteresis": good.hysteresis,
        "segments": good.segments,
        "cap_window_days": good.cap_window_days,
    }
    assert Model(**fields) == good
    for change, message in [
        ({"dimensions": ("web", "email")}, "dimensions: must be sorted"),
        ({"tiers": ()}, "tiers: the first tier's threshold must be 0"),
        ({"cap_window_days": 367}, "model.cap_window_days: must be an integer from 0 to 366"),
        ({"dimension_half_life_days": {"email": 1.0}}, "events.web_visit.dimension"),
        ({"dimension_half_life_days": {"email": 1e306, "web": 1.0}}, "a half-life must be > 0"),
        (
            {"segments": (SegmentRule("s", "all", (Condition("dimension.x", "<", 1.0),)),)},
            "dimension.x",
        ),
    ]:
        with pytest.raises(InvalidModel, match=re.escape(message)):
            Model(**{**fields, **change})

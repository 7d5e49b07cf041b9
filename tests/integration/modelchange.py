"""Helpers of the model-change tests: model variants, the ``model`` commands, the registry,
and what a switch must have published, computed offline through the pure core."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scoring import Change, CustomerState, Model, decode_state, load_model, parse_model_text
from scoring.migrate import standing, switch_changes
from scoring.model import default_model_path
from stream_app.store.keys import Keys, RegistryKeys
from stream_app.store.records import decode_record
from tests.integration.workers import (
    REPO,
    Worker,
    event,
    now_ms,
    unique,
)
from tests.support.diff import close
from tests.support.kafka import MARKER, Message

#: Event types of the generated traffic (the default model's, one per dimension or so).
TYPES = ("email_click", "email_open", "web_visit", "content_download", "webinar_attended",
         "social_share", "review_submitted", "loyalty_join")  # fmt: skip


def variant(directory: Path, name: str, *edits: tuple[str, str]) -> Path:
    """The shipped model with text ``edits`` (old, new) applied, as ``<name>.toml``."""
    text = default_model_path().read_text("utf-8")
    for old, new in edits:
        assert old in text, f"the shipped model no longer has {old!r}"
        text = text.replace(old, new, 1)
    path = directory / f"{name}.toml"
    path.write_text(text, "utf-8")
    load_model(path)
    return path


VERSION_2 = ("version = 1", "version = 2")
#: Tiers and a rule only: can be derived from current state.
THRESHOLDS = (VERSION_2, ("warm = 20", "warm = 12"), ("hot = 60", "hot = 35"))
#: Points and a half-life: needs a replay.
POINTS = (
    VERSION_2,
    ("points = 3                     # a deliberate action", "points = 9"),
    ("half_life_days = 14            # inbox", "half_life_days = 5            # inbox"),
    ('points = 5\ndimension = "content"', 'points = 9\ndimension = "content"'),
    ("points = 10                    # an hour", "points = 16                    # an hour"),
    ("[events.social_share]\npoints = 4", "[events.social_share]\npoints = 7"),
)


def traffic(customers: int, per_customer: int, *, seed: int, tag: str) -> list[dict[str, Any]]:
    """Recent events (the last few minutes: no decay crossing is due for hours)."""
    rng = random.Random(seed)
    start = now_ms() - 240_000
    docs = []
    for i in range(customers):
        for j in range(rng.randint(1, per_customer)):
            ts = start + rng.randint(0, 200_000)
            docs.append(event(unique(f"{tag}e"), f"{tag}-c{i}", rng.choice(TYPES), ts + j))
    rng.shuffle(docs)
    return docs


def model_cli(w: Worker, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """``engagement-scorer model ARGS`` with the worker's environment."""
    return subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "model", *args],
        env=w.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Registry:
    """The registry as the tests read it (plain Redis)."""

    fields: dict[str, str]

    @property
    def epoch(self) -> int:
        return int(self.fields.get("epoch", "0"))

    @property
    def switched_at(self) -> float:
        return float(self.fields["switched_at"])


def registry(w: Worker) -> Registry:
    raw = w.redis.hgetall(RegistryKeys(w.settings.key_prefix).registry())
    return Registry({k.decode(): v.decode() for k, v in raw.items()})  # type: ignore[union-attr]


def engaged(w: Worker, slot: int) -> set[int]:
    raw = w.redis.hgetall(RegistryKeys(w.settings.key_prefix).engaged(slot))
    return {int(k) for k in raw}  # type: ignore[union-attr]


def stored_states(
    w: Worker, namespace: str, model: Model, customers: Iterable[str]
) -> dict[str, CustomerState | None]:
    """Customer -> state under ``namespace`` (None: no record)."""
    keys = Keys(w.settings.key_prefix, namespace)
    ids = list(customers)
    out: dict[str, CustomerState | None] = {}
    for cid, raw in zip(ids, w.redis.mget([keys.state(c) for c in ids]), strict=True):  # type: ignore[arg-type]
        rec = None if raw is None else decode_record(raw)
        out[cid] = None if rec is None or rec.state is None else decode_state(rec.state, model)
    return out


def expected_switch(
    before: Mapping[str, CustomerState | None],
    old: Model,
    after: Mapping[str, CustomerState | None],
    new: Model,
    at_ms: float,
) -> dict[str, Change]:
    """Change id -> the change a switch from ``old`` to ``new`` publishes."""
    out: dict[str, Change] = {}
    for cid in sorted(set(before) | set(after)):
        for c in switch_changes(
            cid,
            old_state=before.get(cid),
            old_model=old,
            new_state=after.get(cid),
            new_model=new,
            at_ms=at_ms,
        ):
            out[c.change_id] = c
    return out


def model_changes(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The published CloudEvents of cause ``model``, in order."""
    events = [orjson.loads(m.value) for m in messages if m.value != MARKER]
    return [e for e in events if e["data"]["cause"] == "model"]


def same_ids_same_contents(events: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Change ids published with more than one content (empty: none)."""
    seen: dict[str, set[bytes]] = defaultdict(set)
    for e in events:
        seen[e["id"]].add(orjson.dumps(e, option=orjson.OPT_SORT_KEYS))
    return {i: sorted(c) for i, c in seen.items() if len(c) > 1}


def matches(published: Mapping[str, dict[str, Any]], expected: Mapping[str, Change]) -> list[str]:
    """What differs between published model changes (id -> CloudEvent) and expected ones."""
    problems = []
    if set(published) != set(expected):
        problems.append(
            f"ids: {len(set(published) - set(expected))} unexpected, "
            f"{len(set(expected) - set(published))} missing, of {len(expected)}"
        )
    for cid in set(published) & set(expected):
        data, want = published[cid]["data"], expected[cid]
        got = (data["customer_id"], data["kind"], data["segment"], data["from"], data["to"],
               data["model"], data["model_version"], data["occurred_at_ms"])  # fmt: skip
        exp = (want.customer_id, want.kind, want.name, want.from_tier, want.to_tier,
               want.model, want.model_version, want.occurred_at_ms)  # fmt: skip
        if got != exp or not close(data["score"], want.score):
            problems.append(f"{cid}: {got} {data['score']} != {exp} {want.score}")
    return problems


def downstream_view(messages: Sequence[Message]) -> dict[str, tuple[str, frozenset[str]]]:
    """What a consumer that applies every change in order believes of each customer."""
    tiers: dict[str, str] = {}
    segments: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        if m.value == MARKER:
            continue
        d = orjson.loads(m.value)["data"]
        cid = d["customer_id"]
        if d["kind"] == "tier":
            tiers[cid] = d["to"]
        elif "entered" in orjson.loads(m.value)["type"]:
            segments[cid].add(d["segment"])
        else:
            segments[cid].discard(d["segment"])
    return {c: (tiers.get(c, ""), frozenset(segments[c])) for c in set(tiers) | set(segments)}


def view_of(state: CustomerState | None, model: Model) -> tuple[str, frozenset[str]]:
    st = standing(state, model)
    return st.tier_name, frozenset(st.segments)


def disagreements(
    view: Mapping[str, tuple[str, frozenset[str]]],
    states: Mapping[str, CustomerState | None],
    model: Model,
) -> dict[str, Any]:
    """Customers whose last published standing is not their standing under ``model``."""
    lowest = model.tiers[0].name
    out = {}
    for cid, state in states.items():
        tier, segs = view.get(cid, ("", frozenset()))
        want = view_of(state, model)
        if (tier or lowest, segs) != want:
            out[cid] = ((tier or lowest, sorted(segs)), (want[0], sorted(want[1])))
    return out


def model_of(path: Path) -> Model:
    return parse_model_text(path.read_text("utf-8"), str(path))


def http_json(port: int, path: str) -> tuple[int, Any]:
    """GET ``path`` from a worker's web server on loopback: (status, JSON body)."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=15) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, orjson.loads(exc.read())
    except OSError:
        return 0, None


def wait_processed_in(
    w: Worker, namespace: str, sent: Mapping[str, Any], *, timeout: float = 60.0
) -> None:
    """Wait until each customer's record under ``namespace`` marks its input offset applied."""
    keys = Keys(w.settings.key_prefix, namespace)

    def missing() -> list[str]:
        ids = list(sent)
        late = []
        for cid, raw in zip(ids, w.redis.mget([keys.state(c) for c in ids]), strict=True):  # type: ignore[arg-type]
            s = sent[cid]
            if raw is None or decode_record(raw).marks.get(f"i{s.partition}", -1) < s.offset:
                late.append(cid)
        return late

    w.wait(lambda: not missing(), timeout=timeout, what=f"processed in {namespace}")

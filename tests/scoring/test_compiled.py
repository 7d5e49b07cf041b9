"""The mypyc-compiled scoring core gives the pure package's results, bit for bit.

The compiled copy is built once per set of sources (``compiled_build.build``, about half
a minute of one core) and reused. Skipped only on a machine that cannot compile;
``scripts/compiled-check`` (CI) fails there instead, and also runs every scoring test
against the compiled copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.scoring.compiled_build import NoToolchain, build

pytestmark = pytest.mark.compiled

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TRACE = HERE / "scoring_trace.py"
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


@pytest.fixture(scope="module")
def compiled() -> Path:
    try:
        return build(ROOT)
    except NoToolchain as exc:
        pytest.skip(f"cannot compile here: {exc}")


def _run(path_first: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``args`` in a fresh interpreter that imports ``scoring`` from ``path_first``."""
    env = {**os.environ, "PYTHONPATH": str(path_first), "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, *args], cwd=path_first, env=env, capture_output=True, check=False
    )


def _trace(path_first: Path, seed: int) -> tuple[bytes, str]:
    done = _run(path_first, str(TRACE), "--seed", str(seed), "--events", "1500")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.stdout, done.stderr.decode()


#: Every module of scoring/ and the file it loads from, one per line.
LOADED = """
import importlib, pkgutil, scoring
for m in [scoring, *(importlib.import_module(i.name)
                     for i in pkgutil.walk_packages(scoring.__path__, "scoring."))]:
    print(m.__name__, m.__file__)
"""


def test_the_compiled_copy_loads_every_module_compiled(compiled: Path) -> None:
    done = _run(compiled, "-c", LOADED)
    assert done.returncode == 0, done.stderr.decode()
    loaded = dict(line.split(" ", 1) for line in done.stdout.decode().splitlines())
    sources = sorted((ROOT / "scoring").rglob("*.py"))
    assert len(loaded) == len(sources) > 20
    pure = {name: path for name, path in loaded.items() if not path.endswith(SUFFIX)}
    assert not pure, f"left interpreted: {pure}"
    assert loaded["scoring.state"] == str(compiled / "scoring" / f"state{SUFFIX}")
    assert loaded["scoring.codec"] == str(compiled / "scoring" / "codec" / f"__init__{SUFFIX}")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pure_and_compiled_give_the_same_bytes(compiled: Path, seed: int) -> None:
    pure, pure_from = _trace(ROOT, seed)
    native, native_from = _trace(compiled, seed)
    assert pure_from.strip() == "scoring from __init__.py"
    assert native_from.strip() == f"scoring from __init__{SUFFIX}"
    assert pure.count(b"\n") > 1500  # every message and probe left a line
    if pure != native:
        first = next(
            i
            for i, (a, b) in enumerate(zip(pure.splitlines(), native.splitlines(), strict=False))
            if a != b
        )
        a, b = pure.splitlines()[first], native.splitlines()[first]
        pytest.fail(f"line {first} differs:\npure:     {a[:600]!r}\ncompiled: {b[:600]!r}")


def test_the_doctests_hold_for_the_compiled_modules(compiled: Path) -> None:
    done = _run(compiled, str(HERE / "compiled_build.py"), "doctest")
    out = done.stdout.decode()
    assert done.returncode == 0, out[-3000:] + done.stderr.decode()[-2000:]
    assert f"state{SUFFIX}" in out and " 0 failed" in out

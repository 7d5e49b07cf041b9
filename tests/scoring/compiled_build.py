"""A mypyc-compiled copy of the scoring core, for comparing it with the pure package.

:func:`build` copies what the build needs to a directory under ``build/compiled-check/``
(or ``$COMPILED_CHECK_CACHE``) named by a hash of those files and of the toolchain, and
compiles ``scoring/`` there in place (``SCORING_BUILD=mypyc setup.py build_ext --inplace``).
A later call with the same sources reuses it. With that directory first on ``sys.path``,
``import scoring`` loads the compiled modules.

The build depends on ``setup.py``, ``pyproject.toml`` and ``scoring/`` only (and the
Python and mypy versions); :func:`copy_tests` puts the current ``tests/scoring/`` (with
``tests/__init__.py``, ``tests/conftest.py`` and ``tests/support/``, which scoring tests
import) and ``docs/schemas/`` next to it.

``python tests/scoring/compiled_build.py doctest`` runs the doctests of ``scoring/``'s
sources against the modules ``import scoring`` loads (compiled modules keep no
docstrings, so the examples are read from the ``.py`` files next to them).
"""

from __future__ import annotations

import ast
import doctest
import hashlib
import importlib
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Where the compiled copies are kept; ``COMPILED_CHECK_CACHE`` may point elsewhere (a
#: directory CI keeps between runs: a copy is reused only for the same hash).
CACHE = Path(os.environ.get("COMPILED_CHECK_CACHE") or ROOT / "build" / "compiled-check")
COPIED = ("setup.py", "pyproject.toml", "README.md", "scoring")
#: What the build depends on (README.md is copied, pyproject.toml names it, but its text
#: does not change the build).
HASHED = ("setup.py", "pyproject.toml", "scoring")
TESTS = (
    "tests/__init__.py", "tests/conftest.py", "tests/scoring", "tests/support", "docs/schemas",
)  # fmt: skip
_SKIP = shutil.ignore_patterns("__pycache__", "*.so", "*.c", ".hypothesis", "build")


class NoToolchain(RuntimeError):
    """This machine cannot compile (no C compiler, no Python headers, or no mypyc)."""


class BuildFailed(RuntimeError):
    """mypyc or the C compiler failed on the scoring core."""


def _files(root: Path) -> list[Path]:
    out = []
    for name in HASHED:
        path = root / name
        if path.is_file():
            out.append(path)
        else:
            out.extend(p for p in sorted(path.rglob("*")) if p.is_file() and _kept(p))
    return out


def _kept(path: Path) -> bool:
    return "__pycache__" not in path.parts and path.suffix not in {".so", ".c", ".pyc"}


def source_hash(root: Path = ROOT) -> str:
    """Hash of the files the build depends on, the Python version and mypy's version."""
    from mypy.version import __version__ as mypy_version

    h = hashlib.sha256(f"{platform.python_version()} {mypy_version}".encode())
    for path in _files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build(root: Path = ROOT, cache: Path = CACHE) -> Path:
    """The compiled copy of ``root`` (built now, or earlier from the same sources)."""
    try:
        key = source_hash(root)
    except ImportError as exc:
        raise NoToolchain("mypy (and its mypyc) is not installed") from exc
    dest = cache / key
    if (dest / "BUILT").is_file():
        return dest
    work = cache / f".{key}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in COPIED:
        src = root / name
        if src.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / name)
        else:
            shutil.copytree(src, work / name, ignore=_SKIP)
    began = time.monotonic()
    env = {**os.environ, "SCORING_BUILD": "mypyc"}
    argv = [sys.executable, "setup.py", "build_ext", "--inplace", "--parallel", "2"]
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        tail = (done.stdout + done.stderr)[-3000:]
        if "SCORING_BUILD=mypyc, but" in tail:
            raise NoToolchain(tail.strip().splitlines()[-1])
        raise BuildFailed(f"setup.py build_ext failed:\n{tail}")
    (work / "BUILT").write_text(f"{time.monotonic() - began:.1f} s\n")
    try:
        work.rename(dest)
    except OSError:  # another process built the same sources meanwhile
        shutil.rmtree(work, ignore_errors=True)
    for old in sorted(cache.glob("*/BUILT"), key=lambda p: p.stat().st_mtime)[:-3]:
        shutil.rmtree(old.parent, ignore_errors=True)  # keep the three newest builds
    return dest


def copy_tests(compiled: Path, root: Path = ROOT) -> None:
    """Put ``root``'s scoring tests (and the schemas they read) into ``compiled``."""
    for name in TESTS:
        src, dest = root / name, compiled / name
        if src.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            continue
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(src, dest, ignore=_SKIP)


def build_seconds(compiled: Path) -> float:
    """How long the build of ``compiled`` took."""
    return float((compiled / "BUILT").read_text().split()[0])


def _docstrings(path: Path) -> list[tuple[str, str, int]]:
    """``(name, docstring, line)`` of the module and of every class and function in it."""
    tree = ast.parse(path.read_text("utf-8"))
    found = []
    if doc := ast.get_docstring(tree, clean=False):
        found.append(("", doc, 0))
    for node in ast.walk(tree):
        kinds = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        if isinstance(node, kinds) and (doc := ast.get_docstring(node, clean=False)):
            found.append((node.name, doc, node.lineno))
    return found


def run_doctests() -> tuple[int, int, list[str]]:
    """Doctests of ``scoring/**/*.py`` run against the loaded modules: (attempted, failed,
    files)."""
    import scoring

    package = Path(scoring.__path__[0])
    parser, attempted, failed, loaded = doctest.DocTestParser(), 0, 0, []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for source in sorted(package.rglob("*.py")):
        parts = source.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = importlib.import_module(name)
        loaded.append(Path(module.__file__ or "?").name)
        for obj, doc, line in _docstrings(source):
            test = parser.get_doctest(doc, dict(vars(module)), f"{name}.{obj}", str(source), line)
            if test.examples:
                result = runner.run(test)
                attempted, failed = attempted + result.attempted, failed + result.failed
    return attempted, failed, loaded


def main(argv: list[str]) -> int:
    if argv[1:] == ["doctest"]:
        attempted, failed, loaded = run_doctests()
        print(f"{attempted} examples, {failed} failed, modules: {' '.join(loaded)}")
        return 1 if failed or not attempted else 0
    if argv[1:] == ["build"]:  # and copy the tests: the directory on stdout
        compiled = build()
        copy_tests(compiled)
        took = build_seconds(compiled)
        print(f"compiled copy: {compiled} (its build took {took:.1f} s)", file=sys.stderr)
        print(compiled)
        return 0
    print(f"usage: {argv[0]} build|doctest", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

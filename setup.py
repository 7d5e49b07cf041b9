"""Build hook: compile the pure scoring core (``scoring/``) with mypyc when possible.

Everything else about the package is in ``pyproject.toml``; setuptools runs this file
for every build and takes ``ext_modules`` from it. ``SCORING_BUILD`` chooses:

* ``auto`` (the default): a wheel is compiled when mypyc and a C compiler (with the
  Python headers) are present, and pure Python otherwise (a compile that fails falls
  back to pure Python too, with a warning). An editable install stays pure Python: a
  compiled module next to its source would shadow every later edit of that source.
* ``mypyc``: compile, or fail the build (the Docker image and ``scripts/compiled-check``).
* ``pure``: never compile.

The compiled build and the pure one give the same results bit for bit
(``scripts/compiled-check`` runs the scoring tests against the compiled one and compares
the outputs of both on generated event streams).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
MODES = ("auto", "mypyc", "pure")
#: Commands that build extension modules (metadata-only runs need no mypyc pass).
BUILDING = {"build", "build_ext", "bdist_wheel", "bdist", "install", "develop", "editable_wheel"}


def _say(message: str) -> None:
    print(f"setup.py: {message}", file=sys.stderr, flush=True)


def build_mode(environ: Mapping[str, str], argv: Sequence[str]) -> str:
    """``auto``, ``mypyc`` or ``pure``, from ``SCORING_BUILD`` and the setup.py command."""
    mode = environ.get("SCORING_BUILD", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise SystemExit(f"SCORING_BUILD={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "auto" and "editable_wheel" in argv:
        _say("editable install: scoring/ stays pure Python (SCORING_BUILD=mypyc compiles it)")
        return "pure"
    return mode


def missing_toolchain() -> str | None:
    """Why this machine cannot compile (None: it can)."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler!r} is not on PATH)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"no Python headers ({include}/Python.h)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed (it comes with mypy)"
    return None


#: Modules of ``scoring/`` left interpreted (they would still work with the compiled
#: ones): none. A module that mypyc gets wrong goes here, with what it gets wrong.
INTERPRETED: frozenset[str] = frozenset()


def scoring_sources(root: Path = ROOT) -> list[str]:
    """Every module of ``scoring/`` and its sub-packages, relative to ``root`` (mypyc reads
    them all)."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "scoring").rglob("*.py"))


def extensions(mode: str, argv: Sequence[str]) -> list[object]:
    """The extension modules to build: none when pure, or when ``argv`` builds nothing."""
    if mode == "pure" or not BUILDING & set(argv[1:]):
        return []
    missing = missing_toolchain()
    if missing is not None:
        if mode == "mypyc":
            raise SystemExit(f"SCORING_BUILD=mypyc, but {missing}")
        _say(f"{missing}: scoring/ stays pure Python")
        return []
    from mypyc.build import mypycify

    _say("compiling scoring/ with mypyc")
    try:
        # group_name: the runtime library the modules share is ``scoring__mypyc``
        sources = scoring_sources()
        compiled = [p for p in sources if p not in INTERPRETED]
        return list(
            mypycify(sources, only_compile_paths=compiled, opt_level="3", group_name="scoring")
        )
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error
        if mode == "mypyc":
            raise
        _say(f"mypyc failed ({type(exc).__name__}: {exc}); scoring/ stays pure Python")
        return []


class OptionalBuildExt(build_ext):
    """``build_ext`` that, in ``auto`` mode, leaves a pure Python package if a compile fails."""

    required = False

    def run(self) -> None:
        self._drop_stale()
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError...: all mean "no"
            if self.required:
                raise
            _say(f"compiling failed ({type(exc).__name__}: {exc}); scoring/ stays pure Python")
            for ext in self.extensions:  # a module without its shared library cannot load
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []
            self.distribution.ext_modules = []

    def _drop_stale(self) -> None:
        """Remove compiled scoring modules this build does not make (a module since
        renamed, removed or left interpreted), which a wheel would otherwise ship."""
        wanted = {Path(self.get_ext_fullpath(ext.name)).resolve() for ext in self.extensions}
        places = [Path(self.build_lib)] + ([ROOT] if self.inplace else [])
        for place in places:
            for path in [*place.glob("scoring/**/*.so"), *place.glob("scoring__mypyc*.so")]:
                if path.resolve() not in wanted:
                    _say(f"removing {path}: not built by this build")
                    path.unlink()


def warn_shadowing(root: Path = ROOT) -> list[Path]:
    """Compiled modules in the source tree (from an in-place build) shadow the sources."""
    found = sorted([*root.glob("scoring/**/*.so"), *root.glob("scoring__mypyc*.so")])
    if found:
        _say(
            f"{len(found)} compiled module(s) in scoring/ shadow its sources (e.g. "
            f"{found[0].name}): remove them (rm -f scoring/*.so scoring/*/*.so scoring__mypyc*.so)"
        )
    return found


if __name__ == "__main__":  # as setuptools runs it (tests import it to check the rules)
    MODE = build_mode(os.environ, sys.argv)
    if MODE == "pure" and BUILDING & set(sys.argv[1:]):
        warn_shadowing()
    OptionalBuildExt.required = MODE == "mypyc"
    setup(ext_modules=extensions(MODE, sys.argv), cmdclass={"build_ext": OptionalBuildExt})

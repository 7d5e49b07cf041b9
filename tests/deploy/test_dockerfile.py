"""``Dockerfile``: slim base, non-root, the console script, what it copies kept by
``.dockerignore``."""

from __future__ import annotations

import json
import re
import shlex
import tomllib

from stream_app.cli.main import build_parser
from stream_app.settings import PREFIX, Settings
from tests.deploy.specs import DEFAULTS, REPO

# --------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text("utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        lines.append((word.upper(), rest.strip()))
    return lines


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1] :]


def test_dockerfile_runs_the_console_script_as_a_non_root_user() -> None:
    final = _final_stage()
    assert final[0][1].split()[0] == "python:3.11-slim"
    users = [i for i, (word, _) in enumerate(final) if word == "USER"]
    runs = [i for i, (word, _) in enumerate(final) if word == "RUN"]
    assert users and users[-1] > max(runs), "the last USER must follow every RUN"
    user = final[users[-1]][1].split(":")[0]
    assert user not in {"root", "0"}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    (script,) = pyproject["project"]["scripts"]
    entry = dict(final)
    assert json.loads(entry["ENTRYPOINT"]) == [script] == ["engagement-scorer"]
    cmd = json.loads(entry["CMD"])
    assert cmd == ["worker"] and build_parser().parse_args(cmd).command == "worker"


def test_dockerfile_environment_and_ports() -> None:
    env: dict[str, str] = {}
    for word, args in _final_stage():
        if word == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    assert env["ENGAGEMENT_WEB_BIND"] == "0.0.0.0"
    engagement = {k: v for k, v in env.items() if k.startswith(PREFIX)}
    Settings.from_env(engagement)
    exposed = [a for w, a in _final_stage() if w == "EXPOSE"]
    assert exposed == [str(DEFAULTS.web_port)]


def test_dockerfile_healthcheck_probes_healthz() -> None:
    """The image's HEALTHCHECK probes the worker's own /healthz route."""
    checks = [a for w, a in _dockerfile() if w == "HEALTHCHECK"]
    assert checks
    assert all("/healthz" in c for c in checks)
    views = (REPO / "stream_app" / "http" / "views.py").read_text("utf-8")
    assert '@app.page("/healthz")' in views


def test_dockerfile_builds_the_project_from_files_the_context_keeps() -> None:
    instructions = _dockerfile()
    copies = [a.split() for w, a in instructions if w == "COPY" and "--from" not in a]
    sources = [src for args in copies for src in args[:-1] if not src.startswith("--")]
    assert set(sources) == {"pyproject.toml", "setup.py", "README.md", "scoring", "stream_app"}
    runs = " ".join(a for w, a in instructions if w == "RUN")
    assert re.search(r"pip (wheel|install)\b[^&]* \.(\s|$)", runs), "pip must build the project"
    rules = _dockerignore()
    kept = [
        "pyproject.toml", "setup.py", "README.md", "scoring/__init__.py",
        "scoring/models/default.toml", "stream_app/cli/main.py",
        "stream_app/store/lua/cas_write.lua",
    ]  # fmt: skip
    for path in kept:
        assert (REPO / path).exists() and not _ignored(rules, path), path
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/deploy/test_dockerfile.py",
        "scoring/__pycache__/x.pyc",
        "scoring/state.cpython-311-x86_64-linux-gnu.so",  # an in-place build's leftovers
        "scoring/codec/state.cpython-311-x86_64-linux-gnu.so",
        "build/compiled-check/x/scoring/state.c",
    ]:
        assert _ignored(rules, path), path


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        rules.append((negate, re.compile(_glob(pattern.strip("/")))))
    return rules


def _glob(pattern: str) -> str:
    """Docker's ``.dockerignore`` glob (Go ``filepath.Match`` plus ``**``) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return f"^{out}$"


def _ignored(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Last matching rule wins; a rule matching a parent directory matches its contents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, rx in rules:
        if any(rx.match(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_builds_dependency_wheels_before_copying_the_source() -> None:
    """A change of the code rebuilds the project's wheel only, not every dependency's."""
    order = [(w, a) for w, a in _dockerfile() if w in ("COPY", "RUN")]
    deps = next(i for i, (w, a) in enumerate(order) if w == "RUN" and "-r requirements" in a)
    copied = [a.split()[0] for w, a in order[:deps] if w == "COPY"]
    assert copied == ["pyproject.toml"], copied
    assert "['project']['dependencies']" in order[deps][1]  # no extras: no demo, no dev
    source_copies = [i for i, (w, a) in enumerate(order) if w == "COPY" and "stream_app" in a]
    assert source_copies and min(source_copies) > deps


def test_the_image_ships_the_compiled_scoring_core() -> None:
    """The build stage has a C compiler and compiles scoring/ or fails (no pure fallback);
    the final stage refuses an image whose scoring core is pure Python."""
    instructions = _dockerfile()
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    build = instructions[: starts[-1]]
    env = [w for word, args in build if word == "ENV" for w in shlex.split(args)]
    assert "SCORING_BUILD=mypyc" in env
    runs = [args for word, args in build if word == "RUN"]
    assert any(re.search(r"apt-get install\b.*\bgcc\b", args) for args in runs)
    assert any(w == "COPY" and "setup.py" in a.split() for w, a in build)
    check = [a for w, a in _final_stage() if w == "RUN" and "python -c" in a]
    assert len(check) == 1 and "walk_packages(scoring.__path__" in check[0]
    code = check[0].split('python -c "', 1)[1].split('" ', 1)[0]
    compile(code, "Dockerfile", "exec")  # the joined lines are one valid program
    for word in ("import", "pkgutil", "scoring", "endswith('.py')", "sys.exit("):
        assert word in code, word

"""The documentation agrees with the code: settings, CLI, set-up commands, CI, schemas.

Pure and fast: reads files and imports modules, starts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest

from stream_app.cli.main import build_parser
from stream_app.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]

DOCS = ROOT / "docs"
SCHEMAS = sorted((DOCS / "schemas").glob("*.json"))
ENV_NAME = re.compile(r"\bENGAGEMENT_[A-Z0-9_]*[A-Z0-9]\b")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("the CLI parser has no subcommands")


def test_every_setting_is_documented() -> None:
    doc = _read(DOCS / "configuration.md")
    missing = [
        f"{PREFIX}{f.name.upper()}"
        for f in fields(Settings)
        if f"`{PREFIX}{f.name.upper()}`" not in doc
    ]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_documented_variable_is_a_setting() -> None:
    real = {f"{PREFIX}{f.name.upper()}" for f in fields(Settings)}
    documented = set(ENV_NAME.findall(_read(DOCS / "configuration.md")))
    assert documented, "docs/configuration.md names no ENGAGEMENT_ variable"
    assert documented <= real, f"not Settings fields: {sorted(documented - real)}"


def test_readme_names_only_real_variables() -> None:
    real = {f"{PREFIX}{f.name.upper()}" for f in fields(Settings)}
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        unknown = set(ENV_NAME.findall(_read(path))) - real
        assert not unknown, f"{path.name} names unknown variables {sorted(unknown)}"


def test_readme_documents_every_cli_subcommand() -> None:
    readme = _read(ROOT / "README.md")
    commands = _subcommands()
    assert {"worker", "dev", "simulate", "produce", "score", "tail", "check-model"} <= set(commands)
    missing = [c for c in commands if f"engagement-scorer {c}" not in readme]
    assert not missing, f"README.md does not document {missing}"


def test_readme_has_the_two_setup_commands() -> None:
    readme = _read(ROOT / "README.md")
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", readme, flags=re.S)
    lines = {line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()}
    assert "make dev" in lines
    assert "make test" in lines
    makefile = _read(ROOT / "Makefile")
    assert re.search(r"^dev:", makefile, flags=re.M)
    assert re.search(r"^test:", makefile, flags=re.M)


def test_ci_runs_the_readme_test_command() -> None:
    ci = ROOT / ".ci" / "run"
    commands = [
        line.strip() for line in _read(ci).splitlines() if line.strip() and not line.startswith("#")
    ]
    assert "make test" in commands


def test_changelog_has_an_unreleased_section() -> None:
    changelog = _read(ROOT / "CHANGELOG.md")
    assert re.search(r"^## \[Unreleased\]", changelog, flags=re.M)


def test_relative_links_in_docs_resolve() -> None:
    broken = []
    for path in [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.glob("*.md")]:
        for target in MARKDOWN_LINK.findall(_read(path)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file_part = target.split("#", 1)[0]
            if not (path.parent / file_part).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, f"broken links: {broken}"


def test_there_are_schemas() -> None:
    assert any(p.name == "interaction-event.schema.json" for p in SCHEMAS)


@pytest.mark.parametrize("path", SCHEMAS, ids=[p.name for p in SCHEMAS])
def test_schema_is_valid_json_schema(path: Path) -> None:
    schema = json.loads(_read(path))
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator.check_schema(schema)


USER_DOCS = [
    ROOT / "README.md", *DOCS.glob("*.md"), DOCS / "openapi.yaml", DOCS / "asyncapi.yaml",
    ROOT / "examples" / "README.md", ROOT / "docker-compose.yml",
    ROOT / "deploy" / "prometheus.yml",
]  # fmt: skip


@pytest.mark.parametrize("path", USER_DOCS, ids=[p.name for p in USER_DOCS])
def test_docs_speak_to_users(path: Path) -> None:
    """No internal work history (issue numbers) and no caveats about where this was built."""
    text = _read(path)
    assert not re.search(r"\bissues? (?:#|no\.? ?)?\d+", text, flags=re.I), path.name
    assert not re.search(r"\b(?:been|not) run here\b|\brun here \(", text, flags=re.I), path.name


def test_readme_shows_the_dashboard_and_how_to_reach_the_dev_stack() -> None:
    readme = _read(ROOT / "README.md")
    (image,) = re.findall(r"!\[[^\]]+\]\((docs/img/[^)]+\.png)\)", readme)
    png = (ROOT / image).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") >= 1200  # a full-width screenshot
    for needle in (
        "/dashboard#token=", "/metrics", "Authorization: Bearer", "source /tmp/engagement-dev-",
        "engagement-scorer score", "engagement-scorer tail", "LICENSE",
    ):  # fmt: skip
        assert needle in readme, needle


def test_changelog_has_each_section_once_per_release() -> None:
    changelog = _read(ROOT / "CHANGELOG.md")
    for release in re.split(r"^## ", changelog, flags=re.M)[1:]:
        headings = re.findall(r"^### (.+)$", release, flags=re.M)
        assert len(headings) == len(set(headings)), (release.splitlines()[0], headings)

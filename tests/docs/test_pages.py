"""The documentation holds together: links resolve, named paths exist, configuration snippets
are valid configuration, every shell command is run or checked, and every benchmark figure
carries its date, commit and machine.

The snippets that need a running gateway (Python, curl, verify, the start-up summary) run in
``tests/clients/test_readme.py``."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import build_parser as gateway_parser
from gateway.config import parse_config
from tests.docs.pages import PAGES, ROOT, Snippet, shell_commands, snippets

LINK = re.compile(r"\]\(([^)\s]+)\)")
NAMED_PATH = re.compile(
    r"`((?:gateway|enclave_backend|confidential_common|tests|bench|config|docs)/[^`\s]*)`"
)
# Programs the docs show that are not this project's and not installed here.
EXTERNAL = {
    "open-webui": "Open WebUI's server; tests/clients/test_open_webui.py replays its requests",
    "docker": "no Docker engine here; tests/deploy/test_compose.py checks the compose files",
    "kbs-client": "Trustee's KBS client (not on PyPI); the protocol is tested with our test KBS",
}


def _page_name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=_page_name)
def test_every_relative_link_resolves_to_a_file_and_heading(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{_page_name(page)}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{_page_name(page)}: no heading for {target}"


@pytest.mark.parametrize("page", PAGES, ids=_page_name)
def test_every_path_a_page_names_exists(page: Path) -> None:
    for named in NAMED_PATH.findall(page.read_text()):
        path = named.split("::")[0]
        if any(c in path for c in "{*<"):
            continue  # a pattern, not a path
        assert (ROOT / path).exists(), f"{_page_name(page)} names {path}, which does not exist"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.mark.parametrize("snippet", snippets("yaml"), ids=str)
def test_every_yaml_snippet_parses_and_those_without_placeholders_are_valid_config(
    snippet: Snippet,
) -> None:
    document = yaml.safe_load(snippet.text)
    if isinstance(document, list):  # a list of deployments, shown on its own
        document = {"models": [{"name": "m", "deployments": document}]}
    assert isinstance(document, dict)
    if any("<" in s or "..." in s for s in _strings(document)):
        return  # a template with placeholders for the reader's values
    config = {"api_keys": [{"name": "k", "sha256": "0" * 64}], **document}
    config.setdefault("models", [{"name": "m", "deployments": [{"kind": "local"}]}])
    for model in config["models"]:
        model.setdefault("deployments", [{"kind": "local"}])
    parse_config(config, source=str(snippet))


def _parses(parser_factory: Any, args: list[str], command: str) -> None:
    try:
        parser_factory().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{command!r}: its options do not parse (exit {exc.code})")


def _engine_parser() -> Any:
    from enclave_backend.cli import build_parser

    return build_parser()


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def _check_command(command: str) -> None:
    """A command no test runs is checked against what it calls; an unknown one fails."""
    # VAR=value (a value may be `$(...)`) before the program sets its environment.
    command_only = re.sub(r"^(?:[A-Za-z_]\w*=(?:\$\([^)]*\)|\S)*\s+)+", "", command)
    words = shlex.split(command_only)
    program, args = words[0], words[1:]
    if program == "make":
        assert set(args) <= _make_targets(), f"{command!r}: no such make target"
    elif program == "curl":
        pass  # run in tests/clients/test_readme.py
    elif program == "confidential-gateway" and args[:1] == ["engine"]:
        _parses(_engine_parser, args[1:], command)
    elif program == "confidential-gateway":
        _parses(gateway_parser, args, command)
    elif program in {".venv/bin/enclave-backend", "enclave-backend"}:
        _parses(_engine_parser, args, command)
    elif program.endswith("python") and args[:2] == ["-m", "enclave_backend"]:
        _parses(_engine_parser, args[2:], command)
    elif program.endswith("python") and args[:1] == ["-m"] and args[1].startswith("bench."):
        source = ROOT / (args[1].replace(".", "/") + ".py")
        assert source.exists(), f"{command!r}: {source.relative_to(ROOT)} does not exist"
        text = source.read_text()
        for flag in (a.split("=")[0] for a in args[2:] if a.startswith("--")):
            assert f'"{flag}"' in text, f"{command!r}: {args[1]} has no option {flag}"
    else:
        assert program in EXTERNAL, f"{command!r}: a shell command no test runs or checks"


def test_every_shell_command_is_run_or_checked() -> None:
    found = shell_commands()
    assert found
    for snippet, command in found:
        try:
            _check_command(command)
        except AssertionError as exc:
            raise AssertionError(f"{snippet}: {exc}") from None


PROVENANCE = re.compile(
    r"\*measured (\d{4}-\d{2}-\d{2}), commit ([0-9a-f]{7,40})\b[^*]*?, ([^*]+)\*", re.I | re.S
)
FIGURE_SECTIONS = [
    ("docs/benchmarks.md", None),  # every section after the page's introduction
    ("docs/security.md", "Proving it holds"),
]


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) of every section; the text before the first `## ` is ('', intro)."""
    parts = re.split(r"^(#{2,} .+)$", text, flags=re.M)
    sections = [("", parts[0])]
    sections += [(parts[i].lstrip("# ").strip(), parts[i + 1]) for i in range(1, len(parts), 2)]
    return sections


def _has_table(body: str) -> bool:
    return re.search(r"^\| --- \|", body, re.M) is not None


def _known_commit(commit: str) -> bool:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return True  # not a checkout: nothing to look the commit up in
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True
    )
    return found.returncode == 0


@pytest.mark.parametrize(("page", "heading"), FIGURE_SECTIONS)
def test_every_figure_table_carries_date_commit_and_machine(page: str, heading: str | None) -> None:
    sections = _sections((ROOT / page).read_text())
    chosen = sections[1:] if heading is None else [s for s in sections if s[0] == heading]
    assert chosen
    tables = 0
    for title, body in chosen:
        if not _has_table(body):
            continue
        tables += 1
        table_at = re.search(r"^\|", body, re.M)
        assert table_at is not None
        provenance = PROVENANCE.findall(body[: table_at.start()])
        assert provenance, f"{page} '{title}': a table without 'Measured DATE, commit X, machine'"
        for _, commit, machine in provenance:
            assert machine.strip(), f"{page} '{title}': no machine"
            assert _known_commit(commit), f"{page} '{title}': commit {commit} is unknown"
    assert tables

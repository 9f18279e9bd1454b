"""Every snippet of the front page and the docs pages that talks to a gateway runs against one
served as `make run` does.

Python snippets run in a fresh interpreter in a directory laid out like the repository after
`make run` (``.run/api-key``, ``.run/gateway-cert.pem``), with only the port changed. The
plain-client snippets run with ``httpx`` hidden, as in a fresh ``pip install openai`` venv
(openai 3.x depends on httpx2). The curl, `confidential-gateway verify` and `hash-key`
commands run; the start-up summary shown is the one the gateway prints. Every other snippet
(YAML, the commands that are only parsed, links, paths, benchmark provenance) is checked in
``tests/docs/test_pages.py``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.pages import Snippet, has_placeholder, shell_commands, snippets
from tests.gateway.conftest import RunningGateway

PYTHON = snippets("python")
SUMMARIES = [s for s in snippets("text") if s.text.startswith("confidential-gateway is serving")]
HIDE_HTTPX = "import sys\nsys.modules['httpx'] = None  # a fresh `pip install openai` venv\n"


def _local(snippet: str, served: RunningGateway) -> str:
    return snippet.replace("https://127.0.0.1:8443", served.url)


def _home(served: RunningGateway) -> Path:
    return served.cert.parent.parent


CLI_RUN = re.compile(r"confidential-gateway (verify|hash-key) ")


def _runs(command: str) -> bool:
    if command.startswith("curl "):
        return True
    return CLI_RUN.match(command) is not None and not has_placeholder(command)


def runnable_commands() -> list[str]:
    """The commands a test runs: curl, and the CLI's verify and hash-key without placeholders."""
    return [command for _, command in shell_commands() if _runs(command)]


@pytest.mark.parametrize("snippet", PYTHON, ids=str)
def test_every_python_snippet_runs(served: RunningGateway, snippet: Snippet) -> None:
    code = _local(snippet.text, served)
    prelude = "" if "gateway." in code else HIDE_HTTPX
    completed = subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=_home(served),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, (str(snippet), completed.stderr[-3000:])


def test_the_curl_verify_and_hash_key_commands_run(served: RunningGateway) -> None:
    commands = runnable_commands()
    curl = [c for c in commands if c.startswith("curl ")]
    cli = [c for c in commands if c.startswith("confidential-gateway ")]
    assert curl and any(" verify " in c for c in cli)
    runnable = cli + (curl if shutil.which("curl") else [])
    for command in runnable:
        command = _local(command, served)
        command = command.replace("confidential-gateway ", f"{sys.executable} -m gateway ", 1)
        completed = subprocess.run(
            ["bash", "-c", command],
            cwd=_home(served),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, (command, completed.stderr[-2000:])
        if command.startswith("curl"):
            assert '"choices"' in completed.stdout


def _label(line: str) -> str:
    """What a summary line says before its values: `url`, `tls cert`, `local engine pid`."""
    return re.split(r"\s{2,}|\d", line.strip(), maxsplit=1)[0].strip()


def test_the_startup_summary_shown_is_the_one_the_gateway_prints(served: RunningGateway) -> None:
    assert SUMMARIES
    printed = [line.strip() for line in served.log_path.read_text().splitlines()]
    for snippet in SUMMARIES:
        for line in snippet.text.splitlines():
            label = _label(line)
            assert any(p.startswith(label) for p in printed), (str(snippet), line)

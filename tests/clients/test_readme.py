"""Every snippet on the README front page runs, against a gateway served as `make run` does.

Python snippets run in a fresh interpreter in a directory laid out like the repository after
`make run` (``.run/api-key``, ``.run/gateway-cert.pem``), with only the port changed. The
plain-client snippet runs with ``httpx`` hidden, as in a fresh ``pip install openai`` venv
(openai 3.x depends on httpx2). Shell snippets run where their tools exist; YAML snippets
parse, and the ones without placeholders parse as gateway configuration."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import parse_config
from tests.clients.conftest import ROOT
from tests.gateway.conftest import RunningGateway

README = (ROOT / "README.md").read_text()
PYTHON = re.findall(r"```python\n(.*?)```", README, re.S)
SHELL = re.findall(r"```sh\n(.*?)```", README, re.S)
YAML = re.findall(r"```yaml\n(.*?)```", README, re.S)
HIDE_HTTPX = "import sys\nsys.modules['httpx'] = None  # a fresh `pip install openai` venv\n"


def _local(snippet: str, served: RunningGateway) -> str:
    return snippet.replace("https://127.0.0.1:8443", served.url)


def _home(served: RunningGateway) -> Path:
    return served.cert.parent.parent


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_every_python_snippet_runs(served: RunningGateway, index: int) -> None:
    snippet = _local(PYTHON[index], served)
    prelude = "" if "gateway." in snippet else HIDE_HTTPX
    completed = subprocess.run(
        [sys.executable, "-c", prelude + snippet],
        cwd=_home(served),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


def _commands(block: str) -> list[str]:
    """Commands of a shell block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines() if line.strip()]


def test_the_curl_and_verify_snippets_run(served: RunningGateway) -> None:
    commands = [c for block in SHELL for c in _commands(block)]
    curl = [c for c in commands if c.startswith("curl ")]
    verify = [c for c in commands if c.startswith("confidential-gateway verify") and "<" not in c]
    assert curl and verify
    runnable = [*verify]
    if shutil.which("curl"):
        runnable += curl
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


def test_every_yaml_snippet_parses_and_those_without_placeholders_are_valid_config() -> None:
    assert YAML
    for snippet in YAML:
        document = yaml.safe_load(snippet)
        if isinstance(document, list):  # a list of deployments, shown on its own
            document = {"models": [{"name": "m", "deployments": document}]}
        assert isinstance(document, dict)
        if "<" in snippet or "..." in snippet:
            continue  # a template with placeholders for the reader's values
        config = {"api_keys": [{"name": "k", "sha256": "0" * 64}], **document}
        config.setdefault("models", [{"name": "m", "deployments": [{"kind": "local"}]}])
        for model in config["models"]:
            model.setdefault("deployments", [{"kind": "local"}])
        parse_config(config, source="README.md")

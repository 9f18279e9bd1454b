"""openai-node (npm ``openai``, pinned in tests/clients/node) runs its runTools loop through
the gateway. `make test` installs the package where Node and npm exist."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import KEY, MODEL
from tests.gateway.conftest import RunningGateway

NODE_DIR = Path(__file__).resolve().parent / "node"


def test_openai_node_run_tools_calls_the_function_and_finishes(served: RunningGateway) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (Debian: apt install nodejs npm); skipped")
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), (
        "the openai npm package is missing: run `make test` (it runs npm ci in tests/clients/node)"
    )
    completed = subprocess.run(
        [node, str(NODE_DIR / "run_tools.mjs"), served.url + "/v1", KEY, MODEL],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(served.cert)},
        cwd=NODE_DIR,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["calls"], "runTools never called the function"
    assert isinstance(result["content"], str) and result["content"]
    assert result["messages"] >= 4  # question, call, result, answer

"""The configuration snippets in docs/pii.md are valid configuration."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.config import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "pii.md"
BASE = {
    "api_keys": [{"name": "k", "sha256": "0" * 64}],
    "models": [{"name": "m", "deployments": [{"kind": "local"}]}],
}


def test_every_yaml_snippet_in_the_pii_page_parses_as_config() -> None:
    snippets = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert snippets
    for snippet in snippets:
        parse_config({**BASE, **yaml.safe_load(snippet)}, source="docs/pii.md")

"""The documentation pages and their fenced snippets, as the docs tests read them.

The pages are README.md (the front page) and every docs/*.md. A snippet is a fenced block
with its language (```python, ```sh, ```yaml, ```text); shell blocks are read as commands,
continuation lines joined and comments dropped."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Snippet:
    page: Path
    index: int  # its place among the page's snippets of this language
    language: str
    text: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.language}{self.index}"


def snippets(language: str) -> list[Snippet]:
    found = []
    for page in PAGES:
        blocks = [m.group(2) for m in FENCE.finditer(page.read_text()) if m.group(1) == language]
        found += [Snippet(page, i, language, text) for i, text in enumerate(blocks)]
    return found


def commands(block: str) -> list[str]:
    """Commands of a shell block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def shell_commands() -> list[tuple[Snippet, str]]:
    return [(s, c) for s in snippets("sh") for c in commands(s.text)]


def has_placeholder(command: str) -> bool:
    """A command with a value for the reader to fill in (`<hex>`, `...`)."""
    return "<" in command or "..." in command

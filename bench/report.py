"""What a benchmark prints and keeps: its figures with date, commit and machine, JSON and a table.

``emit`` puts ``benchmark``, ``date`` (UTC, ISO 8601), ``commit`` and ``machine`` in front of
the figures, writes the JSON to ``--json`` and prints it; ``table`` renders rows as a Markdown
table, so what a run prints can go into the docs as it is.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.paths import ROOT


def cpu_name() -> str:
    """The CPU model: figures differ by vendor and generation."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit() -> str:
    """The checkout's short commit, ``-dirty`` when tracked files differ from it."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    try:
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        dirty = False
    return head + ("-dirty" if dirty else "")


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
    }


def provenance(benchmark: str) -> dict[str, Any]:
    """What every figure carries: which benchmark, when, which commit, on what."""
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
    }


def emit(benchmark: str, figures: Mapping[str, Any], json_path: Path | None) -> dict[str, Any]:
    """The report (provenance, then ``figures``), written to ``json_path`` and printed."""
    report = {**provenance(benchmark), **figures}
    text = json.dumps(report, indent=2)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")
    print(text)
    return report


def describe(report: Mapping[str, Any]) -> str:
    """One line for under a table: when, which commit, on what."""
    host = report["machine"]
    return f"{report['date']}, commit {report['commit']}, {host['cpu']} ({host['cpus']} CPUs)"


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None
) -> str:
    """A Markdown table, columns padded; numeric columns align right; ``None`` shows as ``-``."""
    values = [list(row) for row in rows]
    columns = range(len(headers))
    numeric = [
        bool(values) and all(_is_number(row[i]) or row[i] is None for row in values)
        for i in columns
    ]
    cells = [[_cell(value) for value in row] for row in values]
    widths = [max([3, len(headers[i])] + [len(row[i]) for row in cells]) for i in columns]

    def line(texts: Sequence[str]) -> str:
        padded = [
            t.rjust(widths[i]) if numeric[i] else t.ljust(widths[i]) for i, t in enumerate(texts)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (widths[i] - 1) + (":" if numeric[i] else "-") for i in columns]
    lines = [line(headers), line(rule), *(line(row) for row in cells)]
    return "\n".join(([title, ""] if title else []) + lines)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

"""Where benchmarks find the checkout and keep what they download, computed at run time.

Nothing here names one machine: the checkout is found from this file, caches follow the XDG
base directory rules (``$XDG_CACHE_HOME``, else ``~/.cache``), and every benchmark takes its
output path as ``--json``.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DATA_DIR = ROOT / "bench" / "data"


def cache_dir() -> Path:
    """This project's cache (``bench/build_llama_server.sh`` uses the same root)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "confidential-gateway"


def default_json(benchmark: str) -> Path:
    """Where a benchmark writes its JSON unless ``--json`` says otherwise."""
    return RESULTS_DIR / f"{benchmark}.json"


def in_checkout(path: Path) -> str:
    """``path`` as a report shows it: relative to the checkout when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)

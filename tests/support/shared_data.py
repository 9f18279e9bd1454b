"""Locate the team's shared test data (``../shared/data`` beside the repository).

The vectors there are public third-party material kept in the steering repository, not
copied into this one. Tests that need them are skipped, with the reason, when the checkout
has no ``../shared`` next to it; set ``CONFIDENTIAL_GATEWAY_SHARED_DATA`` to point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_data(name: str) -> Path:
    candidates = []
    if os.environ.get("CONFIDENTIAL_GATEWAY_SHARED_DATA"):
        candidates.append(Path(os.environ["CONFIDENTIAL_GATEWAY_SHARED_DATA"]))
    candidates += [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    for base in candidates:
        if (base / name).is_dir():
            return base / name
    pytest.skip(
        f"shared test data '{name}' not found (looked in {', '.join(map(str, candidates))})",
        allow_module_level=True,
    )

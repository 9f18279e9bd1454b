"""Imported first by the command line: httpx imports its own command-line client (click, rich,
pygments: about 100 ms of start-up and 10 MB) whenever those are installed, and spaCy's
tooling installs them. The gateway never runs it, so its module is stood in for before
httpx is first imported; calling it says so.
"""

from __future__ import annotations

import sys
import types


def _unavailable() -> None:
    raise SystemExit("httpx's command line is not available in the gateway's process")


if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    _stand_in = types.ModuleType("httpx._main")
    _stand_in.main = _unavailable  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = _stand_in

"""No core dumps of the gateway: a dump holds API keys, prompts and PII in plain text.

``RLIMIT_CORE`` 0 (soft and hard, inherited by the engines) and, on Linux,
``PR_SET_DUMPABLE`` 0, which also keeps other processes of the same user from ptrace and from
reading ``/proc/<pid>/mem`` or ``environ``. ``execve`` resets the dumpable flag, so each engine
sets its own (``enclave_backend/process_hardening.py``, a copy: engines never import gateway).
"""

from __future__ import annotations

import ctypes
import logging
import resource
import sys

log = logging.getLogger("gateway")

_PR_SET_DUMPABLE = 4


def disable_core_dumps() -> None:
    """RLIMIT_CORE 0 and, on Linux, not dumpable; a failure is logged, never fatal."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as exc:
        log.warning("cannot set RLIMIT_CORE to 0: %s", type(exc).__name__)
    if not sys.platform.startswith("linux"):
        log.info("not Linux: core dumps are off by RLIMIT_CORE only")
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        log.warning("prctl unavailable (%s): the process stays dumpable", type(exc).__name__)

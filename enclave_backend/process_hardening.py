"""What the engine process does to itself before it holds a prompt.

- No core dumps: a dump holds prompts and completions in plain text. ``RLIMIT_CORE`` 0
  (soft and hard) everywhere, and on Linux ``PR_SET_DUMPABLE`` 0, which also keeps other
  processes of the same user from ptrace and from reading ``/proc/<pid>/mem`` or ``environ``.
  ``execve`` resets the dumpable flag, so the gateway and each engine set it for themselves.
  (``gateway/process_hardening.py`` is the gateway's copy: the engine does not import it.)
- Logs without exception messages: an exception's message can quote request text, so an
  exception is logged by its type and frames only (as the gateway's JSON logs do), also for
  uvicorn's own "Exception in ASGI application" and for uncaught exceptions.
"""

from __future__ import annotations

import ctypes
import logging
import resource
import sys
import threading
import traceback
from types import TracebackType

log = logging.getLogger("enclave_backend")

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3
_FRAMES = 8


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


def is_dumpable() -> bool | None:
    """PR_GET_DUMPABLE for this process; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def describe_exception(exc_info: ExcInfo | tuple[None, None, None]) -> str:
    """An exception as its type and innermost frames, and the same for its causes."""
    kind, value, tb = exc_info
    if kind is None:
        return ""
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = value
    frames_of: TracebackType | None = tb
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = f"{type(current).__module__}.{type(current).__qualname__}"
        lines.append(f"{name.removeprefix('builtins.')} (message withheld)")
        lines += [
            f"  {frame.filename}:{frame.lineno} in {frame.name}"
            for frame in traceback.extract_tb(frames_of)[-_FRAMES:]
        ]
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
        frames_of = current.__traceback__ if current is not None else None
        if current is not None:
            lines.append("caused by:")
    return "\n".join(lines)


class MessageFreeExceptions(logging.Formatter):
    """Wraps a formatter: records keep their text, exceptions lose their messages."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if not record.exc_info and not record.exc_text:
            return self._inner.format(record)
        safe = logging.makeLogRecord(record.__dict__)
        safe.exc_info = None
        safe.exc_text = describe_exception(record.exc_info) if record.exc_info else None
        return self._inner.format(safe)


def log_exceptions_without_messages() -> None:
    """Every root handler and uvicorn's loggers: exceptions by type and frames only."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr)
    for handler in root.handlers:
        if not isinstance(handler.formatter, MessageFreeExceptions):
            handler.setFormatter(MessageFreeExceptions(handler.formatter))
    # uvicorn gets log_config=None (see server.py): its loggers propagate to these handlers.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            handler.setFormatter(MessageFreeExceptions(handler.formatter))

    def excepthook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        log.critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread else "?"
        log.critical(
            "uncaught exception in thread %s",
            name,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook

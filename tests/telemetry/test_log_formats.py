"""Both log formats write an exception as its type and frames, never its message."""

from __future__ import annotations

import io
import logging

import pytest

from gateway.telemetry import configure_logging


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_exception_messages_never_reach_the_log(fmt: str) -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("info", fmt, out)
        try:
            raise ValueError("quoting a request: maria.gonzalez@example-health.org")
        except ValueError:
            logging.getLogger("gateway.test").exception("request failed")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    written = out.getvalue()
    assert "request failed" in written and "ValueError" in written
    assert "maria.gonzalez" not in written

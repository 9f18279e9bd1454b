"""An upstream's SSE stream, read as bytes: each network read becomes a list of events.

Lines end in ``\\n``, ``\\r\\n`` or ``\\r``; only ``data:`` lines count (comments, ``event:``
and blank lines are skipped), each holding one JSON event, until ``data: [DONE]``. A line
longer than ``MAX_LINE_BYTES`` is refused rather than buffered without end.

Under load the events of one read are coalesced: consecutive chunks that only add text to the
same choice become one chunk with the text joined (and their logprobs listed together), so a
gateway that fell behind sends fewer, larger deltas instead of falling further behind. An idle
gateway reads one event at a time and passes each on as it came.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE_BYTES = 8 * 1024 * 1024
DONE = b"[DONE]"
# Keys a chunk may have besides ``choices`` and still be coalesced with its neighbour, when
# both give them the same values (``usage`` only as the null every chunk carries when the
# stream's usage was asked for).
_ENVELOPE = frozenset(
    {"id", "object", "created", "model", "system_fingerprint", "service_tier", "usage"}
)
_TEXT_DELTA = frozenset({"content", "role"})


class SSEFormatError(ValueError):
    """The stream broke the SSE framing or sent something that is not a JSON event."""


class SSEReader:
    """Feeds on the stream's bytes; ``feed`` returns the events completed by them."""

    def __init__(self) -> None:
        self._partial = b""
        self.done = False

    def feed(self, data: bytes) -> list[Any]:
        if b"\r" in data:  # a "\r\n" split across reads adds a blank line: skipped anyway
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._partial + data if self._partial else data
        lines = buffer.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_BYTES:
            raise SSEFormatError(f"a stream line is longer than {MAX_LINE_BYTES} bytes")
        events: list[Any] = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == DONE:
                self.done = True
                break
            try:
                events.append(json.loads(payload))
            except ValueError as exc:
                raise SSEFormatError("an invalid stream event") from exc
        return coalesce(events) if len(events) > 1 else events


def coalesce(events: list[Any]) -> list[Any]:
    """Join neighbouring text-only chunks of the same choice (see the module docstring)."""
    out: list[Any] = []
    for event in events:
        if out and _joinable(out[-1], event):
            _join(out[-1], event)
        else:
            out.append(event)
    return out


def _text_choice(event: Any) -> dict[str, Any] | None:
    """The single choice of a chunk that only adds text, else None."""
    if not isinstance(event, dict) or not _ENVELOPE.issuperset(k for k in event if k != "choices"):
        return None
    if event.get("usage") is not None:
        return None
    choices = event.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    if set(choice) - {"index", "delta", "finish_reason", "logprobs"}:
        return None
    if choice.get("finish_reason") is not None:
        return None
    delta = choice.get("delta")
    if not isinstance(delta, dict) or not _TEXT_DELTA.issuperset(delta):
        return None
    if not isinstance(delta.get("content"), str):
        return None
    logprobs = choice.get("logprobs")
    if logprobs is not None and (
        not isinstance(logprobs, dict)
        or set(logprobs) != {"content"}
        or not isinstance(logprobs["content"], list)
    ):
        return None
    return choice


def _joinable(first: Any, second: Any) -> bool:
    a, b = _text_choice(first), _text_choice(second)
    if a is None or b is None or a.get("index", 0) != b.get("index", 0):
        return False
    if "role" in b["delta"]:
        return False  # a role opens a message: it stays at the start of its own chunk
    if (a.get("logprobs") is None) != (b.get("logprobs") is None):
        return False
    return all(first.get(k) == second.get(k) for k in _ENVELOPE)


def _join(into: dict[str, Any], event: dict[str, Any]) -> None:
    a, b = into["choices"][0], event["choices"][0]
    a["delta"]["content"] += b["delta"]["content"]
    if a.get("logprobs") is not None:
        a["logprobs"]["content"].extend(b["logprobs"]["content"])

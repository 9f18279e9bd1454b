"""One choice's generated text as OpenAI message fields: whole, or as stream deltas.

Without tools the text is the content. With tools, the format's parser splits it into
content and tool calls; each call gets its id here, and streams carry OpenAI's delta shape:
``{"index", "id", "type", "function": {"name", "arguments": ""}}`` first, then the
arguments in fragments. ``finish_reason`` becomes ``tool_calls`` when a call was made and
the model ended it (a call cut off by ``max_tokens`` stays ``length``).
"""

from __future__ import annotations

from typing import Any

from enclave_backend.tools.events import ArgumentsDelta, CallStarted, ContentDelta, ParsedDelta
from enclave_backend.tools.formats import ToolFormat
from enclave_backend.tools.stream_parser import StreamParser

Delta = dict[str, Any]


class ChoiceOutput:
    def __init__(self, tool_format: ToolFormat | None, parser: StreamParser | None) -> None:
        self._format = tool_format
        self._parser = parser
        self._ids: list[str] = []
        self._names: list[str] = []
        self._arguments: list[list[str]] = []
        self._content: list[str] = []

    @property
    def is_plain(self) -> bool:
        """All text is content (no tool parser holds any back)."""
        return self._parser is None

    def push(self, text: str) -> list[Delta]:
        """Deltas for newly generated ``text``."""
        if self._parser is None:
            self._content.append(text)
            return [{"content": text}] if text else []
        return [self._delta(d) for d in self._parser.feed(text)]

    def finish(self) -> list[Delta]:
        """Deltas still held back once generation ended."""
        if self._parser is None:
            return []
        return [self._delta(d) for d in self._parser.finish()]

    def finish_reason(self, reason: str) -> str:
        return "tool_calls" if self._ids and reason == "stop" else reason

    def message(self) -> dict[str, Any]:
        """The whole ``message`` of a non-streamed choice (after ``push``/``finish``)."""
        content = "".join(self._content)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content if content or not self._ids else None,
            "refusal": None,
        }
        if self._ids:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": "".join(arguments)},
                }
                for call_id, name, arguments in zip(
                    self._ids, self._names, self._arguments, strict=True
                )
            ]
        return message

    def _delta(self, parsed: ParsedDelta) -> Delta:
        if isinstance(parsed, ContentDelta):
            self._content.append(parsed.text)
            return {"content": parsed.text}
        if isinstance(parsed, CallStarted):
            assert self._format is not None
            call_id = self._format.call_id()
            self._ids.append(call_id)
            self._names.append(parsed.name)
            self._arguments.append([])
            call = {
                "index": parsed.index,
                "id": call_id,
                "type": "function",
                "function": {"name": parsed.name, "arguments": ""},
            }
            return {"tool_calls": [call]}
        assert isinstance(parsed, ArgumentsDelta)
        self._arguments[parsed.index].append(parsed.text)
        return {"tool_calls": [{"index": parsed.index, "function": {"arguments": parsed.text}}]}

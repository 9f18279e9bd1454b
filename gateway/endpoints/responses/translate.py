"""Responses API <-> chat completions: the gateway serves ``/v1/responses`` through its chat path.

``to_chat`` turns a validated ``ResponsesRequest`` into the chat-completions body that the chat
pipeline (PII tokenize, route, restore) runs; ``from_chat`` turns the chat answer back into a
Response object, and ``ResponsesStream`` does the same for a stream of chat chunks, event by
event. All three are pure: no I/O, no clock, no randomness. The caller chooses the response id and
the times; every item id derives from the response id, so a streamed and an unstreamed answer to
the same completion carry the same ids.

Errors: an HTTP error of ``/v1/responses`` has the same ``{"error": {message, type, param,
code}}`` body as every other endpoint (``gateway.errors``). Once a stream has started, a failure
becomes an ``error`` event followed by ``response.failed`` (``ResponsesStream.fail``), as
OpenAI sends it.

What is not carried over: reasoning deltas (``reasoning_content``) of an upstream are dropped,
since no reasoning items are produced; logprobs are refused at the edge.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from gateway.endpoints.responses.protocol import (
    AllowedTools,
    FunctionCallItem,
    FunctionCallOutputItem,
    JsonObjectFormat,
    JsonSchemaTextFormat,
    MessageItem,
    NamedFunction,
    ResponsesRequest,
)

Event = dict[str, Any]


# -- request -----------------------------------------------------------------------------------


def _chat_messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.instructions is not None:
        messages.append({"role": "system", "content": request.instructions})
    if isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})
        return messages
    for item in request.input:
        if isinstance(item, MessageItem):
            messages.append({"role": item.role, "content": item.text})
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                # The calls of one turn, and the text before them, are one chat message.
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.text})
    return messages


def _chat_tools(request: ResponsesRequest) -> list[dict[str, Any]]:
    allowed = (
        {tool.name for tool in request.tool_choice.tools}
        if isinstance(request.tool_choice, AllowedTools)
        else None
    )
    tools = []
    for tool in request.tools or ():
        if allowed is not None and tool.name not in allowed:
            continue  # allowed_tools restricts the model to these; chat says so by omission
        function: dict[str, Any] = {"name": tool.name}
        for key in ("description", "parameters", "strict"):
            if getattr(tool, key) is not None:
                function[key] = getattr(tool, key)
        tools.append({"type": "function", "function": function})
    return tools


def _chat_tool_choice(request: ResponsesRequest) -> str | dict[str, Any] | None:
    choice = request.tool_choice
    if isinstance(choice, NamedFunction):
        return {"type": "function", "function": {"name": choice.name}}
    if isinstance(choice, AllowedTools):
        return choice.mode
    return choice


def _chat_response_format(request: ResponsesRequest) -> dict[str, Any] | None:
    text_format = request.text.format if request.text is not None else None
    if isinstance(text_format, JsonObjectFormat):
        return {"type": "json_object"}
    if isinstance(text_format, JsonSchemaTextFormat):
        schema: dict[str, Any] = {"name": text_format.name, "schema": text_format.schema_}
        for key in ("description", "strict"):
            if getattr(text_format, key) is not None:
                schema[key] = getattr(text_format, key)
        return {"type": "json_schema", "json_schema": schema}
    return None


def to_chat(request: ResponsesRequest) -> dict[str, Any]:
    """The chat-completions body (``ChatCompletionRequest.model_validate`` accepts it) that
    answers ``request``. A stream always asks for the usage chunk: ``response.completed``
    reports usage. Ignored parameters are left out, so they go nowhere."""
    body: dict[str, Any] = {"model": request.model, "messages": _chat_messages(request)}
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    tools = _chat_tools(request)
    if tools:
        body["tools"] = tools
        choice = _chat_tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    response_format = _chat_response_format(request)
    if response_format is not None:
        body["response_format"] = response_format
    if request.max_output_tokens is not None:
        body["max_completion_tokens"] = request.max_output_tokens
    for key in ("temperature", "top_p", "user"):
        if getattr(request, key) is not None:
            body[key] = getattr(request, key)
    return body


# -- response ----------------------------------------------------------------------------------


def item_id(prefix: str, response_id: str, output_index: int) -> str:
    """The id of output item ``output_index`` of ``response_id``: ``msg_...``, ``fc_...``."""
    digest = hashlib.sha256(f"{response_id}/{output_index}".encode()).hexdigest()
    return f"{prefix}_{digest[:40]}"


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(cached), "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(reasoning)},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def _failure_code(error: dict[str, Any]) -> str:
    """The Response's ``error.code``: one of the few the API defines."""
    if error.get("code") in {"rate_limit_exceeded", "concurrency_limit_exceeded"}:
        return "rate_limit_exceeded"
    if error.get("type") == "invalid_request_error":
        return "invalid_prompt"
    return "server_error"


def _echo_tools(request: ResponsesRequest) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": tool.strict,
        }
        for tool in request.tools or ()
    ]


def _echo_text(request: ResponsesRequest) -> dict[str, Any]:
    text = request.text
    if text is None or text.format is None:
        return {"format": {"type": "text"}, "verbosity": None}
    return {
        "format": text.format.model_dump(mode="json", by_alias=True, exclude_none=True),
        "verbosity": text.verbosity,
    }


def _echo_tool_choice(request: ResponsesRequest) -> str | dict[str, Any]:
    choice = request.tool_choice
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return choice
    return choice.model_dump(mode="json")


def _response(
    request: ResponsesRequest,
    response_id: str,
    created_at: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": completed_at if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "metadata": request.metadata or {},
        "model": request.model,
        "output": output,
        "parallel_tool_calls": (
            request.parallel_tool_calls if request.parallel_tool_calls is not None else True
        ),
        "previous_response_id": None,
        "prompt_cache_key": request.prompt_cache_key,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": request.safety_identifier,
        "service_tier": "default",
        "store": False,
        "temperature": request.temperature,
        "text": _echo_text(request),
        "tool_choice": _echo_tool_choice(request),
        "tools": _echo_tools(request),
        "top_logprobs": 0,
        "top_p": request.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": request.user,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


@dataclass
class _Item:
    """One output item as it builds up: a message (``parts``: kind, text) or a function call."""

    kind: str  # "message" | "function_call"
    output_index: int
    id: str
    parts: list[list[str]] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    arguments: str = ""

    def snapshot(self, status: str) -> dict[str, Any]:
        if self.kind == "function_call":
            return {
                "id": self.id,
                "type": "function_call",
                "status": status,
                "call_id": self.call_id,
                "name": self.name,
                "arguments": self.arguments,
            }
        return {
            "id": self.id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [_part(kind, text) for kind, text in self.parts],
        }


def _part(kind: str, text: str) -> dict[str, Any]:
    return _text_part(text) if kind == "output_text" else _refusal_part(text)


def _statuses(items: list[_Item], finish_reason: str | None) -> list[str]:
    """Each item's final status: a response cut short leaves its last item incomplete."""
    statuses = ["completed"] * len(items)
    if finish_reason in _INCOMPLETE and statuses:
        statuses[-1] = "incomplete"
    return statuses


def _final(
    request: ResponsesRequest,
    response_id: str,
    created_at: int,
    items: list[_Item],
    finish_reason: str | None,
    usage: Any,
    completed_at: int | None,
) -> dict[str, Any]:
    incomplete = _INCOMPLETE.get(finish_reason or "")
    return _response(
        request,
        response_id,
        created_at,
        status="incomplete" if incomplete else "completed",
        output=[
            item.snapshot(status)
            for item, status in zip(items, _statuses(items, finish_reason), strict=True)
        ],
        usage=_usage(usage),
        incomplete=incomplete,
        completed_at=completed_at,
    )


def _call_id(response_id: str, index: int) -> str:
    return item_id("call", response_id, index)[:29]


def from_chat(
    completion: dict[str, Any],
    request: ResponsesRequest,
    response_id: str,
    created_at: int,
    *,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """The Response object for a (restored) chat completion: its message text, then its tool
    calls; ``status`` ``incomplete`` when the completion stopped at its length limit or a
    content filter. An answer with neither text nor calls is one empty message."""
    choices = [c for c in completion.get("choices") or () if isinstance(c, dict)]
    choice = next((c for c in choices if c.get("index", 0) == 0), {})
    message = choice.get("message") or {}
    items: list[_Item] = []
    parts = [
        [kind, value]
        for kind, value in (
            ("output_text", message.get("content")),
            ("refusal", message.get("refusal")),
        )
        if isinstance(value, str) and value
    ]
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    if parts or not calls:
        items.append(
            _Item("message", 0, item_id("msg", response_id, 0), parts or [["output_text", ""]])
        )
    for call in calls:
        index = len(items)
        function = call.get("function") or {}
        items.append(
            _Item(
                "function_call",
                index,
                item_id("fc", response_id, index),
                call_id=str(call.get("id") or _call_id(response_id, index)),
                name=str(function.get("name") or ""),
                arguments=str(function.get("arguments") or ""),
            )
        )
    finish_reason = choice.get("finish_reason")
    return _final(
        request,
        response_id,
        created_at,
        items,
        str(finish_reason) if finish_reason else None,
        completion.get("usage"),
        completed_at,
    )


# -- stream ------------------------------------------------------------------------------------


class ResponsesStream:
    """Chat-completion chunks in, Responses stream events out, for one response.

    ``start`` (``response.created``, ``response.in_progress``), then ``feed`` for each chunk
    (already PII-restored), then either ``finish`` (every open part and item closed, then
    ``response.completed``, or ``response.incomplete`` when the answer was cut short, as OpenAI
    sends it) or ``fail``. Each event is a dict with ``type`` and ``sequence_number`` (0, 1, 2,
    ...); the caller frames them as SSE (``event: <type>`` and ``data: <json>``; the Responses
    API sends no ``[DONE]``).

    Items stay open until ``finish``, so text that arrives after a tool call still lands in the
    message begun before it: for text, then calls (the order chat upstreams send), the final
    Response is the one ``from_chat`` gives for the same completion.
    A tool call is announced (``response.output_item.added``) once its name is known; argument
    pieces before that are held back and sent right after.
    """

    def __init__(self, request: ResponsesRequest, response_id: str, created_at: int) -> None:
        self._request = request
        self._id = response_id
        self._created_at = created_at
        self._sequence = 0
        self._items: list[_Item] = []  # announced, in output_index order
        self._message: _Item | None = None
        self._calls: dict[int, _Item] = {}  # by the chunks' tool call index
        self._pending: dict[int, _Item] = {}  # named not yet: not announced
        self._finish_reason: str | None = None
        self._usage: Any = None
        self._closed = False

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def start(self) -> list[Event]:
        return [
            self._event(kind, response=self._in_progress())
            for kind in ("response.created", "response.in_progress")
        ]

    def _in_progress(self) -> dict[str, Any]:
        return _response(
            self._request, self._id, self._created_at, status="in_progress", output=[], usage=None
        )

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        if self._closed:
            raise RuntimeError("the response stream has already ended")
        events: list[Event] = []
        if isinstance(chunk.get("usage"), dict) and chunk["usage"]:
            self._usage = chunk["usage"]  # the last one counts
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for kind, key in (("output_text", "content"), ("refusal", "refusal")):
                piece = delta.get(key)
                if isinstance(piece, str) and piece:
                    events += self._text(kind, piece)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish_reason = str(choice["finish_reason"])
        return events

    def _open_message(self) -> tuple[_Item, list[Event]]:
        if self._message is not None:
            return self._message, []
        index = len(self._items)
        self._message = _Item("message", index, item_id("msg", self._id, index))
        self._items.append(self._message)
        added = self._event(
            "response.output_item.added",
            output_index=index,
            item=self._message.snapshot("in_progress"),
        )
        return self._message, [added]

    def _text(self, kind: str, piece: str) -> list[Event]:
        message, events = self._open_message()
        content_index = next((i for i, part in enumerate(message.parts) if part[0] == kind), None)
        where = {"item_id": message.id, "output_index": message.output_index}
        if content_index is None:
            content_index = len(message.parts)
            message.parts.append([kind, ""])
            events.append(
                self._event(
                    "response.content_part.added",
                    **where,
                    content_index=content_index,
                    part=_part(kind, ""),
                )
            )
        message.parts[content_index][1] += piece
        if kind == "output_text":
            events.append(
                self._event(
                    "response.output_text.delta",
                    **where,
                    content_index=content_index,
                    delta=piece,
                    logprobs=[],
                )
            )
        else:
            events.append(
                self._event(
                    "response.refusal.delta", **where, content_index=content_index, delta=piece
                )
            )
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        index = call.get("index")
        index = index if isinstance(index, int) else 0
        item = self._calls.get(index)
        if item is None:
            item = _Item("function_call", -1, "")
            self._calls[index] = item
            self._pending[index] = item
        if isinstance(call.get("id"), str) and call["id"] and not item.call_id:
            item.call_id = call["id"]
        function = call.get("function") or {}
        if isinstance(function.get("name"), str):
            item.name += function["name"]
        piece = function.get("arguments")
        piece = piece if isinstance(piece, str) else ""
        if index in self._pending:
            item.arguments += piece
            return self._announce(index) if item.name else []
        if not piece:
            return []
        item.arguments += piece
        return [self._arguments_delta(item, piece)]

    def _announce(self, index: int) -> list[Event]:
        item = self._pending.pop(index)
        item.output_index = len(self._items)
        item.id = item_id("fc", self._id, item.output_index)
        item.call_id = item.call_id or _call_id(self._id, item.output_index)
        self._items.append(item)
        added = {**item.snapshot("in_progress"), "arguments": ""}
        events = [
            self._event("response.output_item.added", output_index=item.output_index, item=added)
        ]
        if item.arguments:  # the pieces held back until the name came
            events.append(self._arguments_delta(item, item.arguments))
        return events

    def _arguments_delta(self, item: _Item, piece: str) -> Event:
        return self._event(
            "response.function_call_arguments.delta",
            item_id=item.id,
            output_index=item.output_index,
            delta=piece,
        )

    def finish(self, *, completed_at: int | None = None) -> list[Event]:
        """Close every part and item, then the terminal event with the whole Response."""
        if self._closed:
            raise RuntimeError("the response stream has already ended")
        self._closed = True
        events: list[Event] = []
        for index in sorted(self._pending):
            events += self._announce(index)  # a call whose name never came
        if not self._items:
            message, added = self._open_message()
            message.parts.append(["output_text", ""])
            events += added
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=message.id,
                    output_index=message.output_index,
                    content_index=0,
                    part=_text_part(""),
                )
            )
        statuses = _statuses(self._items, self._finish_reason)
        for item, status in zip(self._items, statuses, strict=True):
            events += self._close(item, status)
        response = _final(
            self._request,
            self._id,
            self._created_at,
            self._items,
            self._finish_reason,
            self._usage,
            completed_at,
        )
        terminal = (
            "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        )
        events.append(self._event(terminal, response=response))
        return events

    def _close(self, item: _Item, status: str) -> list[Event]:
        where = {"item_id": item.id, "output_index": item.output_index}
        events: list[Event] = []
        if item.kind == "function_call":
            events.append(
                self._event(
                    "response.function_call_arguments.done", **where, arguments=item.arguments
                )
            )
        for content_index, (kind, text) in enumerate(item.parts):
            if kind == "output_text":
                events.append(
                    self._event(
                        "response.output_text.done",
                        **where,
                        content_index=content_index,
                        text=text,
                        logprobs=[],
                    )
                )
            else:
                events.append(
                    self._event(
                        "response.refusal.done", **where, content_index=content_index, refusal=text
                    )
                )
            events.append(
                self._event(
                    "response.content_part.done",
                    **where,
                    content_index=content_index,
                    part=_part(kind, text),
                )
            )
        events.append(
            self._event(
                "response.output_item.done",
                output_index=item.output_index,
                item=item.snapshot(status),
            )
        )
        return events

    def fail(self, error_body: dict[str, Any]) -> list[Event]:
        """A stream that cannot go on: an ``error`` event with the gateway's error (``{"error":
        {message, type, param, code}}``), then ``response.failed`` whose ``error.code`` is the
        API's nearest (``server_error``, ``rate_limit_exceeded``, ``invalid_prompt``). Items
        already begun are reported ``incomplete``."""
        if self._closed:
            raise RuntimeError("the response stream has already ended")
        self._closed = True
        error = error_body.get("error")
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or "The response failed.")
        failure = {
            "code": _failure_code(error),
            "message": message,
            "param": error.get("param"),
            "type": error.get("type"),
        }
        failed = _response(
            self._request,
            self._id,
            self._created_at,
            status="failed",
            output=[item.snapshot("incomplete") for item in self._items],
            usage=_usage(self._usage),
            error=failure,
        )
        return [
            self._event("error", code=error.get("code"), message=message, param=error.get("param")),
            self._event("response.failed", response=failed),
        ]

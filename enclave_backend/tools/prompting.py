"""Conversations with tool calls and tool results, as the chat template will render them.

Two renderings: for a template that knows tools (its own format renders the history), and
for the generic envelope, where the template knows nothing of tools. There, the tool list
and the answer format go into the system message, earlier calls become the envelope the
model is asked to write, and tool results become user turns (any template renders those,
also the ones that insist on user/assistant alternation).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from enclave_backend.tools.spec import ToolSpec

Message = dict[str, Any]
# Small models call the same function again unless told the results are in.
# Said last, where a small model listens: without it SmolLM2 rarely calls at all.
REMINDER = (
    '(If a function can answer this, call it with {{"tool_calls": [...]}}: {names}. '
    'Otherwise answer with {{"response": "..."}}.)'
)
RESULTS_HEADER = "You called functions. Their results:"
RESULTS_FOOTER = "Use these results to answer my question: "


def _arguments_value(arguments: str) -> Any:
    """Templates expect arguments as an object (they ``tojson`` it); keep text that is not."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def native_history(messages: Sequence[Message]) -> list[Message]:
    """Messages for a tool-aware template: call arguments as objects, as templates expect."""
    rendered: list[Message] = []
    for message in messages:
        message = dict(message)
        calls = message.get("tool_calls")
        if calls:
            message["tool_calls"] = [
                {
                    **call,
                    "function": {
                        "name": call["function"]["name"],
                        "arguments": _arguments_value(call["function"]["arguments"]),
                    },
                }
                for call in calls
            ]
        rendered.append(message)
    return rendered


def generic_instructions(spec: ToolSpec, *, after_results: bool = False) -> str:
    lines = [
        "You can call these functions:",
        spec.describe(),
        "",
    ]
    many = "one or more calls" if spec.max_calls > 1 else "exactly one call"
    call_form = '{"tool_calls": [{"name": "...", "arguments": {...}}]}'
    if spec.forced is not None:
        lines.append(f"Call the function {spec.forced}. Answer with this JSON only: {call_form}")
    elif spec.must_call:
        lines.append(f"Call a function ({many}). Answer with this JSON only: {call_form}")
    else:
        # Small models lean to the option named first: name the likely one first.
        options = [
            f"- to call functions ({many}): {call_form}",
            '- to answer the user directly: {"response": "..."} with your answer in it',
        ]
        if after_results:
            options.reverse()
        lines += ["Answer with one JSON object and nothing else, either", *options]
        if not after_results:
            lines.append("When one of the functions can answer the question, call it.")
    return "\n".join(lines)


def generic_history(messages: Sequence[Message], spec: ToolSpec | None) -> list[Message]:
    """Messages for a template without tool support, carrying the generic format.

    A turn's calls and their results become one user turn that lists each call with what
    it returned and repeats the question: small models copy an earlier call otherwise."""
    calls = {
        call["id"]: call["function"]
        for message in messages
        for call in message.get("tool_calls") or ()
    }
    rendered: list[Message] = []
    question = ""
    for message in messages:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            if message.get("content"):
                rendered.append({"role": "assistant", "content": message["content"]})
            continue
        if role == "tool":
            function = calls.get(message.get("tool_call_id") or "")
            name = function["name"] if function else message.get("name") or "a function"
            arguments = function["arguments"] if function else ""
            line = f"- {name}({arguments}) returned: {message.get('content', '')}"
            if rendered and rendered[-1].get("tool_results"):
                rendered[-1]["content"] += "\n" + line
            else:
                rendered.append({"role": "user", "content": line, "tool_results": True})
            continue
        if role == "user":
            question = message.get("content") or ""
        rendered.append({k: v for k, v in message.items() if k != "tool_calls"})
    for message in rendered:
        if message.pop("tool_results", None):
            message["content"] = (
                f"{RESULTS_HEADER}\n{message['content']}\n\n{RESULTS_FOOTER}{question}"
            )
    if spec is None:
        return rendered
    after_results = bool(messages) and messages[-1]["role"] == "tool"
    instructions = generic_instructions(spec, after_results=after_results)
    if not after_results and rendered and rendered[-1]["role"] == "user":
        names = ", ".join(f.name for f in spec.callable)
        last = dict(rendered[-1])
        last["content"] = f"{last.get('content') or ''}\n\n{REMINDER.format(names=names)}"
        rendered[-1] = last
    if rendered and rendered[0]["role"] == "system":
        first = dict(rendered[0])
        first["content"] = f"{first.get('content') or ''}\n\n{instructions}".lstrip()
        return [first, *rendered[1:]]
    return [{"role": "system", "content": instructions}, *rendered]

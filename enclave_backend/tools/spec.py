"""What a request asks of tool calling: the declared functions, the choice, parallelism."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

MAX_PARALLEL_CALLS = 16
DESCRIPTION_CHARS = 160
FULL_DESCRIPTION_CHARS = 2000
Choice = Literal["auto", "required", "named"]


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    description: str | None
    parameters: dict[str, Any]

    def signature(self) -> str:
        """``name(city: string, unit?: "c"|"f"): first line of the description``.

        The grammar enforces the full schema, so the prompt only needs enough for the model
        to choose: a signature is a tenth of the schema's tokens (a frontend may send 36 tools).
        """
        properties = self.parameters.get("properties")
        required = set(self.parameters.get("required") or ())
        parts = []
        if isinstance(properties, dict):
            for name, schema in properties.items():
                mark = "" if name in required else "?"
                parts.append(f"{name}{mark}: {_type_of(schema)}")
        text = f"{self.name}({', '.join(parts)})"
        description = (self.description or "").strip().split("\n", 1)[0][:DESCRIPTION_CHARS]
        return f"{text}: {description}" if description else text

    def for_prompt(self) -> dict[str, Any]:
        described: dict[str, Any] = {"name": self.name}
        if self.description:
            described["description"] = self.description
        described["parameters"] = self.parameters
        return described


@dataclass(frozen=True)
class ToolSpec:
    """Tools that may be called in this turn. ``None`` stands for "no calls" (no tools,
    or ``tool_choice: "none"``)."""

    functions: tuple[FunctionSpec, ...]
    choice: Choice
    forced: str | None  # the function a named choice asks for
    parallel: bool
    parallel_asked: bool = False  # the client sent parallel_tool_calls: true itself

    @property
    def callable(self) -> tuple[FunctionSpec, ...]:
        """The functions the grammar lets the model call."""
        if self.forced is None:
            return self.functions
        return tuple(f for f in self.functions if f.name == self.forced)

    @property
    def must_call(self) -> bool:
        return self.choice != "auto"

    @property
    def max_calls(self) -> int:
        return MAX_PARALLEL_CALLS if self.parallel else 1

    def tools_json(self) -> list[dict[str, Any]]:
        """The tools in OpenAI's request shape, as chat templates expect them."""
        return [{"type": "function", "function": f.for_prompt()} for f in self.functions]

    def describe(self) -> str:
        """The tools for the prompt: their JSON while short, else one signature per line."""
        full = json.dumps([f.for_prompt() for f in self.callable], ensure_ascii=False)
        if len(full) <= FULL_DESCRIPTION_CHARS:
            return full
        return "\n".join(f"- {f.signature()}" for f in self.callable)


def _type_of(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    if isinstance(schema.get("enum"), list):
        return "|".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"][:8])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type_of(schema.get('items'))}"
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind)
    return str(kind or "any")

"""Wire models of ``POST /v1/responses``, OpenAI's Responses API, served statelessly.

Validated once at the edge, like ``gateway.protocol``: unknown keys are refused (fail closed),
and every parameter of the current API is honoured, accepted and ignored, or refused with a 400
naming it. Nothing ignored is forwarded anywhere; the Response object echoes some of it back.

Honoured: ``model``, ``input`` (a string, or ``message``, ``function_call`` and
``function_call_output`` items), ``instructions``, ``tools`` (function tools), ``tool_choice``
(``auto``/``none``/``required``, a named function, ``allowed_tools`` over functions),
``parallel_tool_calls``, ``text.format`` (text, JSON mode, JSON schema), ``max_output_tokens``,
``temperature``, ``top_p``, ``stream``, ``user``.

Accepted and ignored:
- ``store`` omitted or false. Nothing is ever stored here, whatever the client sends; OpenAI's
  default (omitted means true) cannot hold, so the Response says ``store: false``. No SDK sends
  ``store: true`` unless told to (openai-python, the Agents SDK and LangChain omit it; the Vercel AI
  SDK omits it too, Codex sends false), so an explicit ``true`` is refused: that client expects to
  fetch the response again, or to chain on it, and both would fail later and less clearly.
- ``reasoning`` (effort, summary, mode, context): the models here do not reason on a budget and
  produce no reasoning items. The Agents SDK sends ``reasoning.effort`` by default for GPT-5
  model names, so refusing it would break its default request.
- ``include``: only ``reasoning.encrypted_content`` (there are never reasoning items to carry it;
  Codex and stateless Vercel calls send it); the values naming built-in tools, images or logprobs
  are refused. The Agents SDK sends ``include: []`` on every request.
- ``truncation: "disabled"`` (the default); ``"auto"`` is refused: nothing here drops input to
  fit the context window, so an oversized input fails instead of being trimmed.
- ``text.verbosity``, ``stream_options.include_obfuscation``, ``metadata`` (echoed),
  ``service_tier``, ``prompt_cache_key``, ``prompt_cache_retention``, ``prompt_cache_options``
  (``prewarm: true`` refused: it asks for no output), ``safety_identifier``, ``max_tool_calls``
  (it limits built-in tools, which never run here), ``image`` (no image reaches a model here),
  ``background: false``, ``top_logprobs: 0``, and the ignored fields of items sent back
  (``id``, ``status``, ``phase``, ``annotations``, ``logprobs``, ``parsed_arguments``).

Refused: ``previous_response_id``, ``conversation``, ``item_reference`` items (nothing is
stored to refer to; the Vercel AI SDK sends them for earlier assistant text unless its
``providerOptions.openai.store`` is false), ``background: true``, ``background_options``,
``prompt`` (stored prompt templates), ``moderation``, ``context_management``,
``access_programs``, ``top_logprobs`` above 0 and the logprobs include (no log probabilities
yet, as on chat), built-in tools and their items and tool choices, reasoning and compaction
items, image, file and audio parts. Keys outside the API (``seed``, ``stop``, ...) are unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.protocol import (
    FunctionCall,
    FunctionDefinition,
    JsonSchemaFormat,
    MetadataKey,
    MetadataValue,
    PositiveInt,
    Probability,
    refuse_non_text_parts,
)

Temperature = Annotated[float, Field(ge=0.0, le=2.0)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _unsupported(param: str, why: str) -> PydanticCustomError:
    return PydanticCustomError("unsupported_parameter", "{why}", {"why": why, "param": param})


def _invalid(param: str, why: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_parameter_value", "{why}", {"why": why, "param": param})


def _kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) else None


def _tag(value: Any) -> str | None:
    # Tags are not identifiers ("type=message"), so error paths skip them as they skip
    # pydantic's own union labels: 'input[2].content', not 'input[2].message.content'.
    kind = _kind(value)
    if kind is None and isinstance(value, dict) and "role" in value:
        kind = "message"  # an "easy" input message may leave its type out
    return f"type={kind}" if kind is not None else None


def _shape(value: Any) -> str | None:
    return "str" if isinstance(value, str) else "list" if isinstance(value, list) else None


def _by_type(message: str) -> Discriminator:
    return Discriminator(_tag, custom_error_type="invalid_kind", custom_error_message=message)


def _string_or_list(message: str) -> Discriminator:
    return Discriminator(_shape, custom_error_type="invalid_shape", custom_error_message=message)


# Content parts


class InputText(_Wire):
    type: Literal["input_text"]
    text: str
    prompt_cache_breakpoint: Any = Field(default=None, exclude=True)  # ignored


class OutputText(_Wire):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = Field(default=None, exclude=True)  # ignored
    logprobs: list[Any] | None = Field(default=None, exclude=True)  # ignored


class Refusal(_Wire):
    type: Literal["refusal"]
    refusal: str

    @property
    def text(self) -> str:
        return self.refusal


ContentPart = Annotated[
    Annotated[InputText, Tag("type=input_text")]
    | Annotated[OutputText, Tag("type=output_text")]
    | Annotated[Refusal, Tag("type=refusal")],
    _by_type("a content part must be 'input_text', 'output_text' or 'refusal'"),
]
Content = Annotated[
    Annotated[str, Tag("str")] | Annotated[list[ContentPart], Tag("list")],
    _string_or_list("content must be a string or a list of text parts"),
]


def _text_of(content: str | Sequence[InputText | OutputText | Refusal]) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


# Input items


class MessageItem(_Wire):
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: Content
    id: str | None = Field(default=None, exclude=True)  # ignored
    status: Literal["in_progress", "completed", "incomplete"] | None = Field(
        default=None, exclude=True
    )
    phase: Literal["commentary", "final_answer"] | None = Field(default=None, exclude=True)

    _parts = field_validator("content", mode="before")(refuse_non_text_parts)

    @property
    def text(self) -> str:
        return _text_of(self.content)


class FunctionCallItem(FunctionCall):
    """A call the model made, sent back in a tool loop; ``call_id`` pairs it with its output."""

    type: Literal["function_call"]
    call_id: Annotated[str, Field(min_length=1, max_length=256)]
    id: str | None = Field(default=None, exclude=True)  # ignored
    status: Literal["in_progress", "completed", "incomplete"] | None = Field(
        default=None, exclude=True
    )
    namespace: Any = None  # refused unless null: namespaced tools are not supported
    caller: Any = None  # refused unless direct: programmatic tool calling is not supported
    async_: bool | None = Field(default=None, alias="async", exclude=True)

    @model_validator(mode="after")
    def _plain_call(self) -> FunctionCallItem:
        if self.namespace is not None:
            raise ValueError("namespaced tools are not supported; send plain function calls")
        if self.caller is not None and _kind(self.caller) != "direct":
            raise ValueError("only direct calls are supported; programmatic calls are not")
        return self


OutputPart = Annotated[
    Annotated[InputText, Tag("type=input_text")],
    _by_type("a function call output part must be 'input_text'"),
]
ToolOutput = Annotated[
    Annotated[str, Tag("str")] | Annotated[list[OutputPart], Tag("list")],
    _string_or_list("output must be a string or a list of 'input_text' parts"),
]


class FunctionCallOutputItem(_Wire):
    type: Literal["function_call_output"]
    call_id: Annotated[str, Field(min_length=1, max_length=256)]
    output: ToolOutput
    id: str | None = Field(default=None, exclude=True)  # ignored
    status: Literal["in_progress", "completed", "incomplete"] | None = Field(
        default=None, exclude=True
    )
    name: str | None = Field(default=None, exclude=True)  # ignored: call_id says which call
    namespace: Any = Field(default=None, exclude=True)
    caller: Any = Field(default=None, exclude=True)

    _parts = field_validator("output", mode="before")(refuse_non_text_parts)

    @property
    def text(self) -> str:
        return _text_of(self.output)


InputItem = Annotated[
    Annotated[MessageItem, Tag("type=message")]
    | Annotated[FunctionCallItem, Tag("type=function_call")]
    | Annotated[FunctionCallOutputItem, Tag("type=function_call_output")],
    _by_type("an input item must be a message, a 'function_call' or a 'function_call_output'"),
]
Input = Annotated[
    Annotated[str, Tag("str")] | Annotated[list[InputItem], Tag("list")],
    _string_or_list("input must be a string or a list of items"),
]

# Every other item type of the current API, and why it is refused.
_BUILT_IN_ITEMS = (
    "file_search_call", "computer_call", "computer_call_output", "web_search_call",
    "tool_search_call", "tool_search_output", "image_generation_call", "code_interpreter_call",
    "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
    "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "custom_tool_call", "custom_tool_call_output",
)  # fmt: skip
REFUSED_ITEMS = {
    "item_reference": "an 'item_reference' cannot be resolved: nothing is stored here (the "
    "gateway is stateless); send the item itself (Vercel AI SDK: set "
    "providerOptions.openai.store to false)",
    "reasoning": "'reasoning' items are not supported: the models here do not produce them; "
    "leave them out of 'input'",
    "compaction": "'compaction' items are not supported; send the conversation items themselves",
    "compaction_trigger": "server-side compaction is not supported",
    "additional_tools": "tool search is not supported",
    "configuration_update": "'configuration_update' items are not supported",
    "program": "programmatic tool calling is not supported",
    "program_output": "programmatic tool calling is not supported",
    **{
        kind: f"'{kind}' items belong to built-in tools, which are not available here"
        for kind in _BUILT_IN_ITEMS
    },
}


def _refuse_unsupported_items(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            continue
        kind = _kind(item)
        if kind is None and "role" not in item and "id" in item:
            kind = "item_reference"  # its type is optional
        if kind in REFUSED_ITEMS:
            raise _unsupported(f"input[{index}]", REFUSED_ITEMS[kind])
        if kind is not None and kind not in {"message", "function_call", "function_call_output"}:
            raise _invalid(f"input[{index}].type", "not an input item type of the Responses API")
    return value


# Tools and tool choice

BUILT_IN_TOOLS = frozenset((
    "file_search", "web_search", "web_search_2025_08_26", "web_search_preview",
    "web_search_preview_2025_03_11", "computer", "computer_use", "computer_use_preview",
    "code_interpreter", "image_generation", "mcp", "local_shell", "shell", "apply_patch",
    "custom", "namespace", "tool_search", "programmatic_tool_calling",
))  # fmt: skip


def _refuse_built_in(param: str, kind: str | None) -> None:
    if kind in BUILT_IN_TOOLS:
        raise _unsupported(
            param, f"the built-in '{kind}' tool is not available here; only 'function' tools are"
        )
    if kind != "function":
        raise _invalid(param, "only tools of type 'function' are supported")


class FunctionTool(FunctionDefinition):
    """A function tool, flat as the Responses API sends it (chat nests it in ``function``)."""

    type: Literal["function"]
    allowed_callers: list[Literal["direct", "programmatic"]] | None = Field(
        default=None, exclude=True
    )  # ignored: every call here is direct
    output_schema: dict[str, Any] | None = Field(default=None, exclude=True)  # ignored
    defer_loading: bool | None = None
    async_: bool | None = Field(default=None, alias="async")

    @model_validator(mode="after")
    def _loaded_and_synchronous(self) -> FunctionTool:
        if self.defer_loading:
            raise ValueError("deferred loading needs tool search, which is not supported")
        if self.async_:
            raise ValueError("asynchronous function tools are not supported")
        return self


class NamedFunction(_Wire):
    type: Literal["function"]
    name: str


class AllowedTools(_Wire):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[NamedFunction]


ToolChoice = (
    Literal["auto", "none", "required"]
    | Annotated[
        Annotated[NamedFunction, Tag("type=function")]
        | Annotated[AllowedTools, Tag("type=allowed_tools")],
        _by_type("a tool choice must name a 'function' or list 'allowed_tools'"),
    ]
)


# Text format


class TextFormat(_Wire):
    type: Literal["text"]


class JsonObjectFormat(_Wire):
    type: Literal["json_object"]


class JsonSchemaTextFormat(JsonSchemaFormat):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class TextConfig(_Wire):
    format: (
        Annotated[
            Annotated[TextFormat, Tag("type=text")]
            | Annotated[JsonObjectFormat, Tag("type=json_object")]
            | Annotated[JsonSchemaTextFormat, Tag("type=json_schema")],
            _by_type("a text format must be 'text', 'json_object' or 'json_schema'"),
        ]
        | None
    ) = None
    verbosity: Literal["low", "medium", "high"] | None = None  # ignored


# Accepted-and-ignored option objects


class Reasoning(_Wire):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    mode: Annotated[str, Field(max_length=64)] | None = None
    context: Literal["auto", "current_turn", "all_turns"] | None = None


class StreamOptions(_Wire):
    include_obfuscation: bool | None = None  # nothing here pads streams


class PromptCacheOptions(_Wire):
    mode: Literal["implicit", "explicit"] | None = None
    ttl: Literal["30m", "12h"] | None = None
    comparison_response_id: Annotated[str, Field(max_length=256)] | None = None
    prewarm: bool | None = None


class ImageOptions(_Wire):
    context_compression: Literal["auto", "enabled", "disabled"] | None = None


INCLUDABLE = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
_NO_LOGPROBS = "this gateway does not return log probabilities yet"

# Parameters refused whenever they are set to anything but null, and why.
REFUSED_PARAMETERS = {
    "previous_response_id": "responses are never stored here (the gateway is stateless); send "
    "the whole conversation in 'input'",
    "conversation": "conversations are never stored here (the gateway is stateless); send the "
    "whole conversation in 'input'",
    "background_options": "background responses are not supported",
    "prompt": "stored prompt templates are not supported; send 'instructions' and 'input'",
    "moderation": "moderated responses are not supported",
    "access_programs": "access programs are not supported",
}


class ResponsesRequest(_Wire):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: Input
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    # Accepted and ignored (see the module docstring); some are echoed in the Response.
    store: bool | None = None
    background: bool | None = None
    reasoning: Reasoning | None = None
    include: list[INCLUDABLE] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = None
    service_tier: (
        Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None
    ) = None
    prompt_cache_key: Annotated[str, Field(max_length=1024)] | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: PromptCacheOptions | None = None
    safety_identifier: Annotated[str, Field(max_length=256)] | None = None
    max_tool_calls: Annotated[int, Field(ge=0)] | None = None
    image: ImageOptions | None = None
    context_management: list[Any] | None = None  # refused unless empty
    # Refused (REFUSED_PARAMETERS): typed loosely so the refusal, not a shape error, answers.
    previous_response_id: Any = None
    conversation: Any = None
    background_options: Any = None
    prompt: Any = None
    moderation: Any = None
    access_programs: Any = None

    _items = field_validator("input", mode="before")(_refuse_unsupported_items)

    @field_validator("tools", mode="before")
    @classmethod
    def _function_tools_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for index, tool in enumerate(value):
                if isinstance(tool, dict):
                    _refuse_built_in(f"tools[{index}]", _kind(tool))
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _function_choices_only(cls, value: Any) -> Any:
        if isinstance(value, dict):
            kind = _kind(value)
            if kind == "allowed_tools":
                for index, tool in enumerate(value.get("tools") or ()):
                    if isinstance(tool, dict):
                        _refuse_built_in(f"tool_choice.tools[{index}]", _kind(tool))
            elif kind != "function":
                _refuse_built_in("tool_choice", kind)
        return value

    @model_validator(mode="after")
    def _refused(self) -> ResponsesRequest:
        for name, why in REFUSED_PARAMETERS.items():
            if getattr(self, name) is not None:
                raise _unsupported(name, why)
        if self.store:
            raise _unsupported(
                "store",
                "responses are never stored here (the gateway is stateless); omit 'store' or "
                "send false",
            )
        if self.background:
            raise _unsupported("background", "background responses are not supported")
        if self.truncation == "auto":
            raise _unsupported(
                "truncation",
                "input is never truncated here; an input too long for the model fails instead. "
                "Omit 'truncation' or send 'disabled'",
            )
        if self.top_logprobs:
            raise _unsupported("top_logprobs", _NO_LOGPROBS)
        for value in self.include or ():
            if value == "message.output_text.logprobs":
                raise _unsupported("include", _NO_LOGPROBS)
            if value != "reasoning.encrypted_content":
                raise _unsupported(
                    "include",
                    f"'{value}' names output of a built-in tool or an image, not available here",
                )
        if self.context_management:
            raise _unsupported("context_management", "server-side compaction is not supported")
        if self.prompt_cache_options is not None and self.prompt_cache_options.prewarm:
            raise _unsupported(
                "prompt_cache_options.prewarm", "prewarming a prompt cache is not supported"
            )
        return self

    @model_validator(mode="after")
    def _coherent(self) -> ResponsesRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("'stream_options' is only allowed when 'stream' is true")
        if self.input == [] and not self.instructions:
            raise _invalid("input", "'input' must hold at least one item")
        calls: set[str] = set()
        for index, item in enumerate(self.input if isinstance(self.input, list) else ()):
            if isinstance(item, FunctionCallItem):
                calls.add(item.call_id)
            elif isinstance(item, FunctionCallOutputItem) and item.call_id not in calls:
                raise _invalid(
                    f"input[{index}].call_id", "no earlier 'function_call' item has this call_id"
                )
        names = [tool.name for tool in self.tools or ()]
        if len(set(names)) != len(names):
            raise _invalid("tools", "two tools in 'tools' have the same name")
        choice = self.tool_choice
        if choice == "required" and not names:
            raise _invalid("tool_choice", "'required' needs at least one tool in 'tools'")
        chosen = (
            [choice.name]
            if isinstance(choice, NamedFunction)
            else [tool.name for tool in choice.tools]
            if isinstance(choice, AllowedTools)
            else []
        )
        if any(name not in names for name in chosen):
            raise _invalid("tool_choice", "'tool_choice' names a function that is not in 'tools'")
        return self

    @property
    def streaming(self) -> bool:
        return bool(self.stream)

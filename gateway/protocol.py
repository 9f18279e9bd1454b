"""OpenAI wire models for the gateway's edge. Requests are validated here once; no later
stage re-parses them. Unknown fields are refused, never silently dropped or forwarded."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from confidential_common.wire_limits import (
    MAX_CHOICES,
    MAX_STOP_SEQUENCES,
    MAX_TOP_LOGPROBS,
    SchemaName,
)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Wire):
    type: Literal["text"]
    text: str


# Content parts of OpenAI's API that no model here can read, and what to call them.
NON_TEXT_PARTS = {
    "image_url": "images",
    "input_image": "images",
    "input_audio": "audio",
    "file": "files",
    "input_file": "files",
}


def refuse_non_text_parts(value: Any) -> Any:
    """A non-text part gets a message naming it, not "Input should be a valid string"."""
    if isinstance(value, list):
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind in NON_TEXT_PARTS:
                raise PydanticCustomError(
                    "unsupported_content_part",
                    "this model does not accept {what}",
                    {"what": NON_TEXT_PARTS[kind], "index": index, "kind": kind},
                )
    return value


MAX_ARGUMENT_DEPTH = 64


def _nesting_depth(text: str) -> int:
    """How deep ``[``/``{`` nest in JSON text, outside strings (no parsing, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _has_lone_surrogate(node: Any) -> bool:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                return True
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return False


class FunctionCall(_Wire):
    name: str
    arguments: str
    # openai-node's runTools (and openai-python's parse) send a call back with the arguments
    # they parsed; OpenAI ignores them, so do we: never forwarded.
    parsed_arguments: Any = Field(default=None, exclude=True)

    @field_validator("arguments")
    @classmethod
    def _sane_arguments(cls, value: str) -> str:
        # Caught here, once, for every route: deeper JSON or a lone surrogate would only
        # fail later, as a 5xx, when the request is scanned or sent.
        if _nesting_depth(value) > MAX_ARGUMENT_DEPTH:
            raise ValueError(f"arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels")
        try:
            document = json.loads(value)
        except ValueError:
            document = value
        if _has_lone_surrogate(document):
            raise ValueError(
                "arguments hold an unpaired surrogate (\\ud800-\\udfff); send valid Unicode"
            )
        return value


class ToolCall(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    # Fields of a response message that SDKs send back in the history; ignored, not forwarded.
    annotations: list[Any] | None = Field(default=None, exclude=True)
    audio: Any = Field(default=None, exclude=True)
    function_call: Any = Field(default=None, exclude=True)
    parsed: Any = Field(default=None, exclude=True)

    _parts = field_validator("content", mode="before")(refuse_non_text_parts)

    @model_validator(mode="after")
    def _content_where_required(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a '{self.role}' message needs 'content'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs 'tool_call_id'")
        return self


class FunctionDefinition(_Wire):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "object") != "object":
            raise ValueError("a function's parameters must be a JSON schema of type 'object'")
        return value


class ToolDefinition(_Wire):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Wire):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # accepted; nothing here pads streams


class Prediction(_Wire):
    type: Literal["content"]
    content: str | list[TextPart]


# Standard parameters accepted and ignored (docs/api.md says why each is harmless): they are
# never forwarded to any upstream, so nothing they carry leaves the gateway.
IGNORED_PARAMETERS = frozenset(
    {
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
        "reasoning_effort",
        "prediction",
    }
)
# Standard parameters refused, each with why.
REFUSED_PARAMETERS = {
    "audio": "audio output is not supported by this gateway",
    "web_search_options": "web search is not supported by this gateway",
    "functions": "the deprecated 'functions' parameter is not supported; send 'tools'",
    "function_call": "the deprecated 'function_call' parameter is not supported; send "
    "'tool_choice'",
}


class JsonSchemaFormat(_Wire):
    name: SchemaName
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("'json_schema' is required when type is 'json_schema'")
        return self


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
PositiveInt = Annotated[int, Field(ge=1)]
MetadataKey = Annotated[str, Field(max_length=64)]
MetadataValue = Annotated[str, Field(max_length=512)]


def _invalid(param: str, why: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_parameter_value", "{why}", {"param": param, "why": why})


class ChatCompletionRequest(_Wire):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Probability | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    # llama.cpp sampling extensions, forwarded only when set.
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Probability | None = None
    repeat_penalty: Annotated[float, Field(gt=0.0, le=10.0)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    # Accepted and ignored (IGNORED_PARAMETERS).
    metadata: dict[MetadataKey, MetadataValue] | None = None
    store: bool | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    prompt_cache_key: Annotated[str, Field(max_length=1024)] | None = None
    safety_identifier: Annotated[str, Field(max_length=256)] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    prediction: Prediction | None = None
    # Refused (REFUSED_PARAMETERS): typed loosely so the refusal, not a shape error, answers.
    audio: Any = None
    web_search_options: Any = None
    functions: Any = None
    function_call: Any = None

    @model_validator(mode="after")
    def _refused(self) -> ChatCompletionRequest:
        for name, why in REFUSED_PARAMETERS.items():
            if name in self.model_fields_set and getattr(self, name) is not None:
                raise PydanticCustomError(
                    "unsupported_parameter", "{why}", {"why": why, "param": name}
                )
        if self.modalities and "audio" in self.modalities:
            raise PydanticCustomError(
                "unsupported_parameter",
                "{why}",
                {"why": "audio output is not supported by this gateway", "param": "modalities"},
            )
        if self.top_logprobs is not None and not self.logprobs:
            raise _invalid("top_logprobs", "'top_logprobs' requires 'logprobs' to be true")
        return self

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> ChatCompletionRequest:
        choice = self.tool_choice
        names = [tool.function.name for tool in self.tools or ()]
        if len(set(names)) != len(names):
            raise _invalid("tools", "two tools in 'tools' have the same function name")
        if choice is not None and choice != "none" and not self.tools:
            raise _invalid("tool_choice", "'tool_choice' is only allowed when 'tools' are given")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise _invalid("tool_choice", "'tool_choice' names a function that is not in 'tools'")
        return self

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> ChatCompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("'stream_options' is only allowed when 'stream' is true")
        return self

    @property
    def streaming(self) -> bool:
        return bool(self.stream)

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def upstream_body(self, upstream_model: str) -> dict[str, Any]:
        """The JSON the upstream receives: what the client set, under the upstream's model id."""
        body = self.model_dump(
            mode="json",
            exclude_unset=True,
            by_alias=True,
            exclude=set(IGNORED_PARAMETERS | {"modalities"}),
        )
        if body.get("stream_options"):
            body["stream_options"].pop("include_obfuscation", None)
        body["model"] = upstream_model
        return body

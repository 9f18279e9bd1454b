"""The engine's OpenAI wire models: what ``/v1/chat/completions`` accepts.

Validation happens here, once. Unknown fields are refused (never silently ignored), and
fields the engine knows but cannot honour are refused with a message naming them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from confidential_common.wire_limits import (
    MAX_CHOICES,
    MAX_STOP_SEQUENCES,
    MAX_TOP_LOGPROBS,
    SchemaName,
)
from enclave_backend.tools.spec import FunctionSpec, ToolSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


_NON_TEXT_PARTS = {
    "image_url": "images",
    "input_image": "images",
    "input_audio": "audio",
    "file": "files",
    "input_file": "files",
}


def _refuse_non_text_parts(value: Any) -> Any:
    if isinstance(value, list):
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind in _NON_TEXT_PARTS:
                raise PydanticCustomError(
                    "unsupported_content_part",
                    "this model does not accept {what}",
                    {"what": _NON_TEXT_PARTS[kind], "index": index, "kind": kind},
                )
    return value


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    _parts = field_validator("content", mode="before")(_refuse_non_text_parts)

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def for_template(self) -> dict[str, Any]:
        """The plain dict a Hugging Face chat template expects."""
        # Most templates know no "developer" role; it is the system role by another name.
        role = "system" if self.role == "developer" else self.role
        message: dict[str, Any] = {"role": role, "content": self.text()}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class StreamOptions(_Strict):
    include_usage: bool = False


FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MAX_TOOLS = 128


def invalid(param: str, why: str) -> PydanticCustomError:
    """A 400 naming ``param`` (``why`` must not quote the client's values)."""
    return PydanticCustomError("invalid_parameter_value", "{why}", {"param": param, "why": why})


def _object_parameters(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and value.get("type", "object") != "object":
        raise ValueError("a function's parameters must be a JSON schema of type 'object'")
    return value


class FunctionDefinition(_Strict):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    _object = field_validator("parameters")(_object_parameters)


class ToolDefinition(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Strict):
    name: SchemaName
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format.json_schema is required when type is 'json_schema'")
        return self


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class ChatCompletionRequest(_Strict):
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Probability | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Probability | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] = 1
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    repeat_penalty: Annotated[float, Field(gt=0.0, le=10.0)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    tools: Annotated[list[ToolDefinition], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _tools_consistent(self) -> ChatCompletionRequest:
        names = [tool.function.name for tool in self.tools or ()]
        if len(set(names)) != len(names):
            raise invalid("tools", "two tools in 'tools' have the same function name")
        if self.tool_choice not in (None, "none") and not self.tools:
            raise invalid("tool_choice", "'tool_choice' is only allowed when 'tools' are given")
        if (
            isinstance(self.tool_choice, NamedToolChoice)
            and self.tool_choice.function.name not in names
        ):
            raise invalid("tool_choice", "'tool_choice' names a function that is not in 'tools'")
        return self

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise invalid("top_logprobs", "'top_logprobs' requires 'logprobs' to be true")
        return self

    def top_logprobs_asked(self) -> int | None:
        """Alternatives per token when logprobs are asked for (0: the sampled token only);
        None when they are not."""
        if not self.logprobs:
            return None
        return self.top_logprobs or 0

    def tool_spec(self) -> ToolSpec | None:
        """The calls this turn may make; None without tools or with ``tool_choice: none``."""
        if not self.tools or self.tool_choice == "none":
            return None
        functions = tuple(
            FunctionSpec(
                name=tool.function.name,
                description=tool.function.description,
                parameters=tool.function.parameters or {"type": "object", "properties": {}},
            )
            for tool in self.tools
        )
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice):
            return ToolSpec(functions, "named", choice.function.name, parallel=False)
        return ToolSpec(
            functions,
            "required" if choice == "required" else "auto",
            None,
            parallel=self.parallel_tool_calls is not False,
            parallel_asked=self.parallel_tool_calls is True,
        )

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        if isinstance(self.stop, str):
            return (self.stop,) if self.stop else ()
        return tuple(s for s in self.stop if s)

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` wins over the deprecated ``max_tokens``, as in OpenAI."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

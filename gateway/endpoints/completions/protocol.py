"""Wire model of ``POST /v1/completions`` (OpenAI's legacy completions API).

Validated once here; unknown keys are refused. The engine refuses what a model cannot do
(``suffix`` without fill-in-the-middle tokens) with a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from confidential_common.wire_limits import MAX_CHOICES, MAX_STOP_SEQUENCES
from gateway.protocol import Penalty, PositiveInt, Probability, StreamOptions

MAX_PROMPTS = 64
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this API
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


def _invalid(param: str, why: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_parameter_value", "{why}", {"param": param, "why": why})


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=256)]
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_PROMPTS)]
    )
    suffix: str | None = None
    echo: bool | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    max_tokens: PositiveInt | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Probability | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None
    best_of: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: Annotated[str, Field(max_length=256)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise _invalid(
                "stream_options", "'stream_options' is only allowed when 'stream' is true"
            )
        if self.best_of is not None and self.best_of != (self.n or 1):
            raise PydanticCustomError(
                "unsupported_parameter",
                "{why}",
                {"param": "best_of", "why": "best_of other than n is not supported"},
            )
        if self.prompt_count * (self.n or 1) > MAX_CHOICES:
            raise _invalid("n", f"prompts x n may be at most {MAX_CHOICES} choices in one request")
        return self

    @property
    def prompt_count(self) -> int:
        prompt = self.prompt
        if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
            return 1
        return len(prompt)

    @property
    def token_ids(self) -> bool:
        prompt = self.prompt
        return isinstance(prompt, list) and bool(prompt) and not isinstance(prompt[0], str)

    def upstream_body(self) -> dict[str, Any]:
        body = self.model_dump(mode="json", exclude_unset=True, exclude={"user"})
        if body.get("stream_options"):
            body["stream_options"].pop("include_obfuscation", None)
        return body

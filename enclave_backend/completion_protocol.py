"""The engine's wire model of OpenAI's legacy ``POST /v1/completions``.

Validated here, once, as strictly as chat: unknown fields are refused, and the one field the
engine knows but cannot honour in every value (``best_of`` other than ``n``) is refused by
name, as is ``echo`` together with ``logprobs`` (it would need the prompt tokens' logprobs,
which the engine does not compute). Every other OpenAI field of this endpoint is honoured.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from confidential_common.wire_limits import MAX_CHOICES, MAX_STOP_SEQUENCES, MAX_TOP_LOGPROBS
from enclave_backend.protocol import Penalty, Probability, StreamOptions, invalid

# OpenAI's default for this endpoint (chat's is "as many as fit").
DEFAULT_MAX_TOKENS = 16
# Prompts in one request; each prompt times ``n`` must also fit the engine's slots and queue.
MAX_PROMPTS = 64

TokenIds = Annotated[list[StrictInt], Field(min_length=1)]
Prompt = (
    str
    | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
    | TokenIds
    | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_PROMPTS)]
)


def unsupported(param: str, why: str) -> PydanticCustomError:
    return PydanticCustomError("unsupported_parameter", "{why}", {"param": param, "why": why})


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    prompt: Prompt
    suffix: str | None = None
    echo: bool = False
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None  # None: OpenAI's default, 16
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Probability | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] = 1
    best_of: Annotated[int, Field(ge=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    # Alternatives per token (OpenAI allows up to 5; this engine up to 20).
    logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _honourable(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of != self.n:
            if self.best_of < self.n:
                raise invalid("best_of", "'best_of' must be at least 'n'")
            raise unsupported(
                "best_of",
                "this engine returns every choice it generates, so 'best_of' must equal 'n'",
            )
        if self.echo and self.logprobs is not None:
            raise unsupported(
                "echo",
                "'echo' together with 'logprobs' needs the prompt tokens' logprobs, which "
                "this engine does not compute; ask for one or the other",
            )
        return self

    def prompts(self) -> list[str | list[int]]:
        """The prompts as a list: one per string or token-id list."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        token_ids: list[int] = []
        prompts: list[str | list[int]] = []
        for item in self.prompt:
            if isinstance(item, int):
                token_ids.append(item)
            else:
                prompts.append(item)
        return [token_ids] if token_ids else prompts

    def token_limit(self) -> int:
        return DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        if isinstance(self.stop, str):
            return (self.stop,) if self.stop else ()
        return tuple(s for s in self.stop if s)

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

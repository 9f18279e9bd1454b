"""The engine's OpenAI wire model for ``/v1/embeddings``.

Validation happens here, once: unknown fields are refused, ``input`` is one of OpenAI's four
shapes (a string, strings, token ids, lists of token ids) with no empty entry and at most
``MAX_INPUTS`` entries. What needs the model (token ids inside its vocabulary, an input
within its context, ``dimensions`` it can honour) is checked by the service in ``embeddings``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from pydantic_core import PydanticCustomError

# OpenAI's own bound on the entries of one request.
MAX_INPUTS = 2048

TokenIds = Annotated[list[StrictInt], Field(min_length=1)]


_SHAPE = (
    "it must be a string, an array of strings, an array of token ids (integers) or an array "
    "of arrays of token ids"
)


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid(why: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_parameter_value", "{why}", {"param": "input", "why": why})


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    input: StrictStr | list[StrictStr] | TokenIds | list[TokenIds]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    # Accepted as OpenAI documents it (an end-user id for abuse monitoring); not used here.
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _shape(cls, value: object) -> object:
        if value == "" or value == []:
            raise _invalid("it must not be empty")
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise _invalid(_SHAPE)
        if all(_is_token(entry) for entry in value):
            return value  # one input, as token ids
        if len(value) > MAX_INPUTS:
            raise _invalid(f"at most {MAX_INPUTS} inputs are allowed in one request")
        if not (
            all(isinstance(entry, str) for entry in value)
            or all(isinstance(e, list) and all(map(_is_token, e)) for e in value)
        ):
            raise _invalid(_SHAPE)
        if any(entry == "" or entry == [] for entry in value):
            raise _invalid("no input in the list may be empty")
        return value

    def inputs(self) -> list[str] | list[list[int]]:
        """The input as a list of texts or a list of token-id lists."""
        value = self.input
        if isinstance(value, str):
            return [value]
        # Validation made the list homogeneous: exactly one of these is non-empty.
        if texts := [entry for entry in value if isinstance(entry, str)]:
            return texts
        if ids := [entry for entry in value if isinstance(entry, int)]:
            return [ids]
        return [entry for entry in value if isinstance(entry, list)]

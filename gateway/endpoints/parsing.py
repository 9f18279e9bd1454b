"""Validating a request body once, at the edge, into an endpoint's wire model.

Refusals name the parameter only as far as it is the API's own: a client-chosen key (an
e-mail address in a schema, a person's name) is never echoed back.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.errors import from_validation_error, parameter_shaped
from gateway.pii.recognizers.gazetteer import is_known_name
from gateway.pii.recognizers.names import handle_is_name

M = TypeVar("M", bound=BaseModel)


def echoable_parameter(part: str) -> bool:
    """A parameter name the gateway may repeat: parameter-shaped and no person's name in it
    ("margaret_thornton" is a client's key, never an OpenAI parameter)."""
    return (
        parameter_shaped(part)
        and not handle_is_name(part)
        and not any(is_known_name(word) for word in part.split("_"))
    )


def parse_body(model: type[M], body: bytes) -> M:
    """``body`` validated as ``model``, or the client's 400."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc, echoable=echoable_parameter) from None


def parse_translated(model: type[M], data: dict[str, Any]) -> M:
    """``data`` (another endpoint's request, translated) validated as ``model``: every limit
    and refusal of ``model`` applies, and a violation is the client's 400, not a 500."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, echoable=echoable_parameter) from None

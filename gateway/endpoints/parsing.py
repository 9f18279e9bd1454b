"""Validating a request body once, at the edge, into an endpoint's wire model.

Refusals name the parameter only as far as it is the API's own: a client-chosen key (an
e-mail address in a schema, a person's name) is never echoed back.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from gateway.errors import GatewayError, from_validation_error, parameter_shaped
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


def refuse(message: str, param: str, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)

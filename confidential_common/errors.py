"""Errors in OpenAI's shape, ``{"error": {message, type, param, code}}``, for the gateway and
the engine alike: both map a request that fails validation the same way.

Messages say what to fix and never carry request content: a prompt value must never end up
in an error a client, a log or a trace sees.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError


class APIError(Exception):
    """An error answered to the client with ``status`` and ``body()``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _is_union_label(part: int | str) -> bool:
    # pydantic puts the union member it tried ("str", "list[TextPart]", ...) into ``loc``.
    return isinstance(part, str) and (part in _TYPE_LABELS or not part.isidentifier())


# A path part that may be echoed: a parameter name, not a client value chosen as a key
# (an object key in logit_bias or in a schema could be an e-mail address or an SSN).
_PARAMETER_SHAPE = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


def parameter_shaped(part: str) -> bool:
    """Shaped like OpenAI's own parameter names (lowercase snake case, no long digit runs):
    only such parts of a path are echoed, so a client-chosen key ("AKIA...", "sk_live_51...")
    is never repeated back."""
    return bool(_PARAMETER_SHAPE.match(part)) and sum(c.isdigit() for c in part) <= 2


Echoable = Callable[[str], bool]


def param_path(loc: tuple[int | str, ...], echoable: Echoable = parameter_shaped) -> str | None:
    """The dotted path of ``loc``, cut before the first part that is not identifier-shaped."""
    path = ""
    for part in loc:
        if _is_union_label(part):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        elif echoable(part):
            path += f".{part}" if path else part
        else:
            break
    return path or None


def from_validation_error(
    exc: ValidationError, *, echoable: Echoable = parameter_shaped
) -> APIError:
    """The client's 400, naming the parameter only as far as ``echoable`` allows."""
    first = exc.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return bad_request(
            "We could not parse the JSON body of your request. The body must be a JSON object "
            "encoded as UTF-8.",
            code="invalid_json",
        )
    loc = tuple(first["loc"])
    param = param_path(loc, echoable)
    context = first.get("ctx") or {}
    if first["type"] == "unsupported_parameter":
        name = str(context["param"])
        return bad_request(
            f"The parameter '{name}' is not supported: {context['why']}.",
            param=name,
            code="unsupported_parameter",
        )
    if first["type"] == "invalid_parameter_value":
        name = str(context["param"])
        return bad_request(
            f"Invalid value for '{name}': {context['why']}.", param=name, code="invalid_value"
        )
    if first["type"] == "unsupported_content_part":
        where = f"{param}[{context['index']}]" if param else "a content part"
        return bad_request(
            f"This model does not accept {context['what']}: '{where}' is an "
            f"'{context['kind']}' part. Send the message as text parts only.",
            param=param,
            code="unsupported_content_type",
        )
    if first["type"] == "extra_forbidden" and not echoable(str(loc[-1] if loc else "")):
        # The unknown key is the client's own string: name only where it sits.
        parent = param_path(loc[:-1], echoable)
        where = f" inside '{parent}'" if parent else ""
        return bad_request(
            f"The request has an unrecognized request argument{where}.",
            param=parent,
            code="unknown_parameter",
        )
    if first["type"] == "extra_forbidden":
        return bad_request(
            f"Unrecognized request argument supplied: {param}",
            param=param,
            code="unknown_parameter",
        )
    if first["type"] == "missing":
        return bad_request(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    message = str(first["msg"]).removeprefix("Value error, ")
    if param is None:
        return bad_request(f"Invalid request: {message}.", code="invalid_value")
    return bad_request(
        f"Invalid value for '{param}': {message}.", param=param, code="invalid_value"
    )

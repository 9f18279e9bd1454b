"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse


class APIError(Exception):
    """An error a client receives as-is; ``message`` must say what to fix and hold no secrets."""

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

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _is_union_branch_label(part: int | str) -> bool:
    # pydantic names the union member it tried ("str", "list[TextPart]", ...) inside ``loc``.
    return isinstance(part, str) and (part in _TYPE_LABELS or not part.isidentifier())


def _param_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def from_validation_error(exc: ValidationError) -> APIError:
    """The first validation problem, phrased the way OpenAI phrases it."""
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = tuple(p for p in first["loc"] if not _is_union_branch_label(p))
    param = _param_path(loc) or None
    if first["type"] == "extra_forbidden":
        return invalid_request(
            f"Unrecognized request argument supplied: {param}",
            param=param,
            code="unknown_parameter",
        )
    if first["type"] == "missing":
        return invalid_request(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    return invalid_request(
        f"Invalid value for '{param}': {first['msg']}.", param=param, code="invalid_value"
    )

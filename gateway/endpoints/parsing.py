"""Validating a request body once, at the edge, into an endpoint's wire model.

Refusals name the parameter only as far as it is the API's own. A parameter of the wire model
is always named; a key the client made up is named only when it cannot be a person's name
(in any part, as a given name, a surname, an initial and surname, or two names run together)
or a credential (``sk_live_...``): "jane_doe" or "sk_live_ab" in a body is a value, never
repeated back; a typo such as "temprature" is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from gateway.errors import from_validation_error, parameter_shaped
from gateway.pii.recognizers.gazetteer import gazetteer, is_known_name
from gateway.pii.recognizers.names import handle_is_name

M = TypeVar("M", bound=BaseModel)

# Parts that start credentials and key names (Stripe's sk_live_, pk_test_, GitHub's ghp_, ...).
_CREDENTIAL_PARTS = frozenset(
    {
        "sk",
        "pk",
        "rk",
        "ghp",
        "gho",
        "ghs",
        "xoxb",
        "xoxp",
        "whsec",
        "live",
        "secret",
        "token",
        "password",
        "passwd",
        "apikey",
        "bearer",
    }
)
_PART = re.compile(r"[a-z]+")


def _nameish(word: str) -> bool:
    """A given name or surname of any kind (also one that is a common word), an initial
    followed by one, or two run together."""
    gaz = gazetteer()
    if len(word) >= 3 and gaz.kind(word):
        return True
    if len(word) >= 4 and gaz.kind(word[1:]) and "L" in gaz.kind(word[1:]):
        return True  # "jdoe", "mthornton"
    return any(
        len(word[:i]) >= 3 and len(word[i:]) >= 3 and gaz.kind(word[:i]) and gaz.kind(word[i:])
        for i in range(3, len(word) - 2)
    )


def echoable_parameter(part: str) -> bool:
    """A key the gateway may repeat: parameter-shaped and no person's name or credential in it
    ("margaret_thornton" is a client's key, never an OpenAI parameter)."""
    if not parameter_shaped(part) or handle_is_name(part):
        return False
    words = _PART.findall(part)
    return not any(
        is_known_name(word) or word in _CREDENTIAL_PARTS or _nameish(word) for word in words
    )


def _field_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        if field.alias:
            names.add(field.alias)
        for inner in _models_in(field.annotation):
            names |= _field_names(inner, seen)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


@cache
def echoable_for(model: type[BaseModel]) -> Callable[[str], bool]:
    """``model``'s own parameter names, and otherwise ``echoable_parameter``."""
    known = frozenset(_field_names(model, set()))
    return lambda part: part in known or echoable_parameter(part)


def parse_body(model: type[M], body: bytes) -> M:
    """``body`` validated as ``model``, or the client's 400."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc, echoable=echoable_for(model)) from None


def parse_translated(model: type[M], data: dict[str, Any]) -> M:
    """``data`` (another endpoint's request, translated) validated as ``model``: every limit
    and refusal of ``model`` applies, and a violation is the client's 400, not a 500."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, echoable=echoable_for(model)) from None

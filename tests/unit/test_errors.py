import pytest
from pydantic import ValidationError

from confidential_common.errors import from_validation_error
from enclave_backend.protocol import ChatCompletionRequest


def error_for(body: dict) -> dict:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    return from_validation_error(info.value).body()["error"]


def test_unknown_parameter_is_named() -> None:
    error = error_for({"model": "m", "messages": [{"role": "user", "content": "x"}], "foo": 1})
    assert error["param"] == "foo"
    assert error["message"] == "Unrecognized request argument supplied: foo"


def test_nested_path_is_named_without_union_labels() -> None:
    error = error_for({"model": "m", "messages": [{"role": "user", "content": [{"type": "x"}]}]})
    assert error["param"] == "messages[0].content"


def test_missing_field_is_named() -> None:
    error = error_for({"messages": [{"role": "user", "content": "x"}]})
    assert error["param"] == "model"
    assert error["code"] == "missing_required_parameter"


def test_wrong_role_is_an_invalid_value() -> None:
    error = error_for({"model": "m", "messages": [{"role": "robot", "content": "x"}]})
    assert error["param"] == "messages[0].role"
    assert error["code"] == "invalid_value"


def test_unknown_parameter_that_is_not_an_identifier_is_not_echoed() -> None:
    for key in ("maria.gonzalez@example-health.org", "078-05-1120"):
        error = error_for({"model": "m", "messages": [{"role": "user", "content": "x"}], key: 1})
        assert key not in error["message"] and error["param"] is None
        assert error["code"] == "unknown_parameter"


def test_a_client_key_that_is_a_secret_or_a_name_is_never_echoed() -> None:
    from gateway.endpoints.parsing import echoable_parameter
    from gateway.protocol import ChatCompletionRequest

    for key in (
        "AKIAIOSFODNN7EXAMPLE",
        "margaret_thornton",
        "sk_live_51h8abcdef",
        "sk_live_ab",
        "sarah",
        "jane_doe",
        "janedoe",
        "jdoe",
    ):
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}], key: 1}
        try:
            ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            error = from_validation_error(exc, echoable=echoable_parameter)
        assert key not in error.message and error.param is None, key
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobz": 1}
    try:
        ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        assert from_validation_error(exc, echoable=echoable_parameter).param == "logprobz"

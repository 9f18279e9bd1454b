"""The legacy /v1/completions wire model: what it accepts, and what it refuses by name."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from confidential_common.errors import from_validation_error
from enclave_backend.completion_protocol import DEFAULT_MAX_TOKENS, CompletionRequest
from enclave_backend.logprobs import TokenAlternative, TokenLogprob, legacy_logprobs


def request(**extra: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "hi", **extra})


def refusal(**extra: Any) -> tuple[str | None, str | None]:
    with pytest.raises(ValidationError) as info:
        request(**extra)
    error = from_validation_error(info.value)
    return error.param, error.code


def test_every_prompt_shape_becomes_a_list_of_prompts() -> None:
    assert request(prompt="a").prompts() == ["a"]
    assert request(prompt=["a", "b"]).prompts() == ["a", "b"]
    assert request(prompt=[1, 2, 3]).prompts() == [[1, 2, 3]]
    assert request(prompt=[[1], [2, 3]]).prompts() == [[1], [2, 3]]


def test_max_tokens_defaults_to_openais_16() -> None:
    assert request().token_limit() == DEFAULT_MAX_TOKENS == 16
    assert request(max_tokens=None).token_limit() == 16
    assert request(max_tokens=3).token_limit() == 3


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"best_of": 3}, "best_of", "unsupported_parameter"),
        ({"n": 2, "best_of": 1}, "best_of", "invalid_value"),
        ({"echo": True, "logprobs": 1}, "echo", "unsupported_parameter"),
        ({"logprobs": 21}, "logprobs", "invalid_value"),
        ({"prompt": []}, "prompt", "invalid_value"),
        ({"prompt": [[]]}, "prompt", "invalid_value"),
        ({"prompt": [True]}, "prompt", "invalid_value"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"suffx": "x"}, "suffx", "unknown_parameter"),
        ({"top_k": 3}, "top_k", "unknown_parameter"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(
    extra: dict[str, Any], param: str, code: str
) -> None:
    assert refusal(**extra) == (param, code)


def test_best_of_equal_to_n_is_honoured() -> None:
    assert request(n=2, best_of=2).n == 2


def test_legacy_logprobs_always_include_the_sampled_token() -> None:
    sampled = TokenAlternative(5, b" b", -2.0)
    entry = TokenLogprob(sampled, (TokenAlternative(4, b" a", -0.5),), text_offset=3)
    assert legacy_logprobs([entry], offset=2) == {
        "tokens": [" b"],
        "token_logprobs": [-2.0],
        "top_logprobs": [{" a": -0.5, " b": -2.0}],
        "text_offset": [5],
    }

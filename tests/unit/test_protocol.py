import pytest
from pydantic import ValidationError

from enclave_backend.protocol import ChatCompletionRequest


def request(**extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    )


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert request(max_tokens=5, max_completion_tokens=9).token_limit() == 9
    assert request(max_tokens=5).token_limit() == 5
    assert request().token_limit() is None


def test_stop_accepts_a_string_or_a_list_and_drops_empty_strings() -> None:
    assert request(stop="x").stop_sequences() == ("x",)
    assert request(stop=["a", "", "b"]).stop_sequences() == ("a", "b")
    assert request().stop_sequences() == ()


def test_multi_part_text_content_is_joined_and_developer_is_system() -> None:
    message = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
        }
    ).messages[0]
    assert message.for_template() == {"role": "system", "content": "ab"}


def test_top_logprobs_asked_only_with_logprobs_true() -> None:
    assert request(logprobs=True).top_logprobs_asked() == 0
    assert request(logprobs=True, top_logprobs=5).top_logprobs_asked() == 5
    assert request(logprobs=False).top_logprobs_asked() is None
    assert request().top_logprobs_asked() is None


def test_top_logprobs_without_logprobs_or_past_20_is_refused() -> None:
    with pytest.raises(ValidationError, match="requires 'logprobs'"):
        request(top_logprobs=2)
    with pytest.raises(ValidationError):
        request(logprobs=True, top_logprobs=21)

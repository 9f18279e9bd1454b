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


def test_logprobs_is_reported_as_unsupported() -> None:
    assert request(logprobs=True).unsupported_parameter() == "logprobs"
    assert request(logprobs=False).unsupported_parameter() is None

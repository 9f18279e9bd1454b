"""Legacy ``POST /v1/completions`` and log-probabilities (completions and chat) through the TLS
gateway, as openai-python parses them."""

from __future__ import annotations

import math
from typing import Any

import httpx
import openai
import pytest

from tests.clients.conftest import (
    KEY,
    MODEL,
    RecordingTransport,
    raises_verification_error,
    tampered_attested_sdk,
    verified_claims,
)
from tests.gateway.conftest import RunningGateway

PROMPT = "The capital of France is"
ASK = [{"role": "user", "content": "Name three colours."}]


def sdk(served: RunningGateway) -> tuple[openai.OpenAI, RecordingTransport]:
    transport = RecordingTransport(served.tls_context())
    client = openai.OpenAI(
        base_url=served.url + "/v1",
        api_key=KEY,
        max_retries=0,
        http_client=httpx.Client(transport=transport, timeout=300),
    )
    return client, transport


def test_a_completion_answers_text_with_usage_and_a_verified_token(
    served: RunningGateway, served_evidence: Any
) -> None:
    client, transport = sdk(served)
    result = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert result.object == "text_completion" and result.id
    [choice] = result.choices
    assert choice.index == 0 and isinstance(choice.text, str) and choice.text
    assert choice.finish_reason in {"stop", "length"}
    assert result.usage is not None
    assert 0 < result.usage.completion_tokens <= 8 and result.usage.prompt_tokens > 0
    if choice.finish_reason == "length":
        assert result.usage.completion_tokens == 8
    request, response, received = transport.exchanges[-1]
    claims = verified_claims(
        served_evidence, request, bytes(received), response.headers["x-attestation-token"]
    )
    assert claims["jti"] == result.id and claims["model"]["name"] == MODEL


def test_a_streamed_completion_ends_with_a_finish_reason_and_a_verified_token(
    served: RunningGateway, served_evidence: Any
) -> None:
    client, transport = sdk(served)
    chunks = list(
        client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, stream=True
        )
    )
    assert chunks and all(chunk.choices for chunk in chunks)
    text = "".join(chunk.choices[0].text for chunk in chunks)
    assert text
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
    assert len({chunk.id for chunk in chunks}) == 1
    request, _, received = transport.exchanges[-1]
    claims = verified_claims(served_evidence, request, bytes(received))
    assert claims["jti"] == chunks[0].id


def test_stream_usage_comes_in_a_last_chunk_without_choices(served: RunningGateway) -> None:
    client, _ = sdk(served)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert 0 < chunks[-1].usage.completion_tokens <= 6
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_echo_puts_the_prompt_before_the_text(served: RunningGateway) -> None:
    client, _ = sdk(served)
    result = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0, echo=True
    )
    assert result.choices[0].text.startswith(PROMPT)
    assert len(result.choices[0].text) > len(PROMPT)


def test_a_list_of_prompts_gives_one_choice_each_in_order(served: RunningGateway) -> None:
    client, _ = sdk(served)
    prompts = ["One, two,", "Red, green,"]
    result = client.completions.create(
        model=MODEL, prompt=prompts, max_tokens=4, temperature=0, echo=True
    )
    assert [c.index for c in result.choices] == [0, 1]
    for prompt, choice in zip(prompts, result.choices, strict=True):
        assert choice.text.startswith(prompt)


def test_a_stop_sequence_ends_the_text_before_it(served: RunningGateway) -> None:
    client, _ = sdk(served)
    result = client.completions.create(
        model=MODEL, prompt="1, 2, 3, 4,", max_tokens=32, temperature=0, stop=["7"]
    )
    choice = result.choices[0]
    assert "7" not in choice.text
    if choice.finish_reason == "stop":
        assert result.usage is not None and result.usage.completion_tokens < 32


def assert_is_logprob(value: float) -> None:
    assert math.isfinite(value) and value <= 0.0


def test_completion_logprobs_have_the_legacy_shape(served: RunningGateway) -> None:
    client, _ = sdk(served)
    result = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=3
    )
    choice = result.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None
    tokens, values = logprobs.tokens, logprobs.token_logprobs
    assert tokens and values and logprobs.top_logprobs and logprobs.text_offset
    count = len(tokens)
    assert len(values) == len(logprobs.top_logprobs) == len(logprobs.text_offset) == count
    assert "".join(tokens) == choice.text
    assert logprobs.text_offset == sorted(logprobs.text_offset)
    assert logprobs.text_offset[0] == 0
    for token, value, top in zip(tokens, values, logprobs.top_logprobs, strict=True):
        assert value is not None
        assert_is_logprob(value)
        assert 1 <= len(top) <= 3
        for alternative in top.values():
            assert_is_logprob(alternative)
        # Greedy, no bias, penalty or grammar: the sampled token is the most likely one.
        assert max(top.values()) == pytest.approx(value, abs=1e-5)
        assert top.get(token) == pytest.approx(value, abs=1e-5)


def test_streamed_completion_logprobs_arrive_with_their_tokens(served: RunningGateway) -> None:
    client, _ = sdk(served)
    text, tokens = "", []
    for chunk in client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=2, stream=True
    ):
        choice = chunk.choices[0]
        text += choice.text
        if choice.logprobs is not None:
            tokens += choice.logprobs.tokens or []
            for value in choice.logprobs.token_logprobs or []:
                assert_is_logprob(value)
            for top in choice.logprobs.top_logprobs or []:
                assert 1 <= len(top) <= 2
    assert tokens and "".join(tokens) == text


def test_chat_logprobs_with_top_logprobs_are_sorted_and_match_the_content(
    served: RunningGateway,
) -> None:
    client, _ = sdk(served)
    result = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3
    )
    choice = result.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == choice.message.content
    assert b"".join(bytes(t.bytes or []) for t in content).decode() == choice.message.content
    for entry in content:
        assert_is_logprob(entry.logprob)
        assert len(entry.top_logprobs) == 3
        ranked = [alt.logprob for alt in entry.top_logprobs]
        assert ranked == sorted(ranked, reverse=True)
        for alt in entry.top_logprobs:
            assert_is_logprob(alt.logprob)
            assert alt.bytes is not None and bytes(alt.bytes).decode("utf-8", "replace")
        # Greedy, no bias, penalty or grammar: the sampled token is the most likely one.
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-5)


def test_chat_logprobs_without_top_logprobs_give_empty_alternatives(
    served: RunningGateway,
) -> None:
    client, _ = sdk(served)
    result = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=6, temperature=0, logprobs=True
    )
    content = result.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(entry.top_logprobs == [] for entry in content)


def test_streamed_chat_logprobs_cover_every_delta(served: RunningGateway) -> None:
    client, _ = sdk(served)
    text, tokens = "", []
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=12,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        stream=True,
    ):
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        for entry in (choice.logprobs.content or []) if choice.logprobs else []:
            tokens.append(entry.token)
            assert_is_logprob(entry.logprob)
            ranked = [alt.logprob for alt in entry.top_logprobs]
            assert len(ranked) == 2 and ranked == sorted(ranked, reverse=True)
    assert text and "".join(tokens) == text


def test_logprobs_limits_are_refused_by_name(served: RunningGateway) -> None:
    client, _ = sdk(served)
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=4, logprobs=True, top_logprobs=21
        )
    assert chat.value.body["param"] == "top_logprobs"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as legacy:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, logprobs=21)
    assert legacy.value.body["param"] == "logprobs"  # type: ignore[index]


def test_the_verifying_transport_rejects_a_tampered_completion_and_stream(
    served: RunningGateway,
) -> None:
    client = tampered_attested_sdk(served)
    raises_verification_error(
        lambda: client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4)
    )
    raises_verification_error(
        lambda: list(
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, stream=True)
        )
    )

"""The upstream SSE reader: framing as the SSE spec allows it, refusals, and coalescing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.upstreams.sse_reader import MAX_LINE_BYTES, SSEFormatError, SSEReader


def text_chunk(text: str, *, index: int = 0, **delta: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "delta": {**delta, "content": text}, "finish_reason": None}],
    }


def wire(*events: Any) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def test_events_split_anywhere_across_reads_come_out_whole() -> None:
    data = wire(text_chunk("a"), text_chunk("b", index=1)) + b"data: [DONE]\n\n"
    for cut in range(1, len(data)):
        reader = SSEReader()
        events = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert [e["choices"][0]["delta"]["content"] for e in events] == ["a", "b"]
        assert reader.done


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_of_the_spec_is_understood(newline: bytes) -> None:
    data = (
        b": a comment"
        + newline
        + b"event: message"
        + newline
        + b"data:"
        + json.dumps(text_chunk("x")).encode()
        + newline
        + newline
        + b"data: [DONE]"
        + newline
    )
    for cut in range(1, len(data)):
        reader = SSEReader()
        events = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert [e["choices"][0]["delta"]["content"] for e in events] == ["x"]
        assert reader.done


def test_nothing_after_done_is_read() -> None:
    reader = SSEReader()
    assert reader.feed(b"data: [DONE]\n\n" + wire(text_chunk("late"))) == []
    assert reader.done


def test_invalid_json_and_endless_lines_are_refused() -> None:
    with pytest.raises(SSEFormatError):
        SSEReader().feed(b"data: {not json\n\n")
    reader = SSEReader()
    with pytest.raises(SSEFormatError):
        for _ in range(MAX_LINE_BYTES // (1 << 20) + 2):
            reader.feed(b"data: " + b"x" * (1 << 20))


def test_text_chunks_of_one_read_are_joined_in_order() -> None:
    first = text_chunk("Hel", role="assistant")
    events = SSEReader().feed(wire(first, text_chunk("lo"), text_chunk(" world")))
    assert len(events) == 1
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hello world"}


def test_chunks_carrying_a_null_usage_are_joined_but_the_usage_chunk_is_not() -> None:
    a, b = {**text_chunk("a"), "usage": None}, {**text_chunk("b"), "usage": None}
    events = SSEReader().feed(wire(a, b, usage()))
    assert len(events) == 2
    assert events[0]["choices"][0]["delta"]["content"] == "ab"
    assert events[0]["usage"] is None
    assert events[1] == usage()


def test_logprobs_are_joined_with_their_text() -> None:
    a, b = text_chunk("a"), text_chunk("b")
    a["choices"][0]["logprobs"] = {"content": [{"token": "a", "logprob": -1.0}]}
    b["choices"][0]["logprobs"] = {"content": [{"token": "b", "logprob": -2.0}]}
    (joined,) = SSEReader().feed(wire(a, b))
    assert joined["choices"][0]["delta"]["content"] == "ab"
    assert [t["token"] for t in joined["choices"][0]["logprobs"]["content"]] == ["a", "b"]


def finished(text: str) -> dict[str, Any]:
    chunk = text_chunk(text)
    chunk["choices"][0]["finish_reason"] = "stop"
    return chunk


def tool_call() -> dict[str, Any]:
    chunk = text_chunk("")
    chunk["choices"][0]["delta"] = {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}
    return chunk


def usage() -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }


@pytest.mark.parametrize(
    "second",
    [
        text_chunk("b", index=1),  # another choice
        text_chunk("b", role="assistant"),  # a new message's role
        finished("b"),  # the end of a choice stays its own chunk
        tool_call(),
        usage(),
        {**text_chunk("b"), "created": 2},  # another envelope
        {**text_chunk("b"), "x_engine": {"slots": [0]}},  # anything unknown
    ],
)
def test_anything_but_more_text_of_the_same_choice_stays_apart(second: dict[str, Any]) -> None:
    events = SSEReader().feed(wire(text_chunk("a"), second))
    assert len(events) == 2
    assert events[0] == text_chunk("a")
    assert events[1] == second


def test_one_event_per_read_passes_unchanged() -> None:
    reader = SSEReader()
    for word in ("a", "b", "c"):
        assert reader.feed(wire(text_chunk(word))) == [text_chunk(word)]

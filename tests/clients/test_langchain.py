"""LangChain and LangGraph through the TLS gateway: bind_tools, a ReAct agent loop, and
with_structured_output in each of its three methods."""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.clients.conftest import KEY, MODEL
from tests.gateway.conftest import RunningGateway

CALLS: list[str] = []


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    CALLS.append(city)
    return f"It is 18 degrees and sunny in {city}."


def llm(served: RunningGateway, **extra: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        base_url=served.url + "/v1",
        api_key=KEY,  # type: ignore[arg-type]
        max_retries=0,
        http_client=httpx.Client(verify=served.tls_context()),
        http_async_client=httpx.AsyncClient(verify=served.tls_context()),
        **extra,
    )


def test_bind_tools_invoke_and_stream_give_tool_calls(served: RunningGateway) -> None:
    model = llm(served, temperature=0, max_tokens=64).bind_tools(
        [get_weather], tool_choice="get_weather"
    )
    answer = model.invoke("What's the weather in Paris?")
    assert isinstance(answer, AIMessage)
    [call] = answer.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    assert call["id"]
    chunks = list(model.stream("What's the weather in Paris?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk  # type: ignore[assignment]
    assert merged.tool_calls and merged.tool_calls[0]["name"] == "get_weather"  # type: ignore[attr-defined]


def test_a_tool_result_goes_back_and_the_model_answers(served: RunningGateway) -> None:
    model = llm(served, temperature=0, max_tokens=64).bind_tools([get_weather])
    question = HumanMessage("What's the weather in Paris?")
    first = model.invoke([question])
    assert isinstance(first, AIMessage) and first.tool_calls
    result = get_weather.invoke(first.tool_calls[0]["args"])
    second = model.invoke(
        [question, first, ToolMessage(result, tool_call_id=first.tool_calls[0]["id"])]
    )
    assert isinstance(second, AIMessage)
    assert second.content or second.tool_calls


def test_a_langgraph_react_agent_calls_the_python_tool_and_finishes(
    served: RunningGateway,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

        agent = create_react_agent(llm(served, temperature=0, max_tokens=64), [get_weather])
    CALLS.clear()
    state = agent.invoke(
        {"messages": [HumanMessage("What's the weather in Paris?")]},
        {"recursion_limit": 12},
    )
    messages = state["messages"]
    assert CALLS, "the agent never ran the Python tool"
    assert any(isinstance(m, ToolMessage) for m in messages)
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls and final.content


class City(BaseModel):
    name: str
    country: str


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
def test_with_structured_output_in_every_method(served: RunningGateway, method: str) -> None:
    structured = llm(served, temperature=0, max_tokens=96).with_structured_output(
        City,
        method=method,  # type: ignore[arg-type]
    )
    prompt = "Name a European capital city and its country. Answer in JSON with name, country."
    result = structured.invoke(prompt)
    assert isinstance(result, City)

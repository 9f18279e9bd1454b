"""The gateway and the engine are two processes with two copies of the OpenAI wire models; this
is the contract between them. The engine runs without the gateway package, both answer a bad
request with the same error (status, type, param, code), and both enforce the limits of
``confidential_common.wire_limits``, so a request the gateway accepts is never refused by the
engine behind it for a limit the gateway did not know."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import confidential_common
import enclave_backend
from confidential_common.errors import APIError
from confidential_common.wire_limits import (
    MAX_CHOICES,
    MAX_SCHEMA_NAME_LENGTH,
    MAX_STOP_SEQUENCES,
    MAX_TOP_LOGPROBS,
)
from enclave_backend.http_app import parse_chat_request
from gateway.endpoints.parsing import parse_body
from gateway.protocol import ChatCompletionRequest as GatewayChatRequest


def gateway_parse(body: bytes) -> GatewayChatRequest:
    """What the gateway's chat endpoint does with a body it has read."""
    return parse_body(GatewayChatRequest, body)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def schema_format(**json_schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"schema": {"type": "object"}, **json_schema}}


def shape(error: APIError) -> tuple[int, str, str | None, str | None]:
    body = error.body()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    return error.status, body["type"], body["param"], body["code"]


def refusal(parse: Any, body: dict[str, Any] | bytes) -> tuple[int, str, str | None, str | None]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(APIError) as info:
        parse(raw)
    return shape(info.value)


BAD_BODIES: list[tuple[str, dict[str, Any] | bytes, str | None, str]] = [
    ("unknown-parameter", chat(frobnicate=1), "frobnicate", "unknown_parameter"),
    ("n-too-large", chat(n=MAX_CHOICES + 1), "n", "invalid_value"),
    ("n-zero", chat(n=0), "n", "invalid_value"),
    ("stop-list-too-long", chat(stop=["s"] * (MAX_STOP_SEQUENCES + 1)), "stop", "invalid_value"),
    (
        "top-logprobs-too-large",
        chat(top_logprobs=MAX_TOP_LOGPROBS + 1),
        "top_logprobs",
        "invalid_value",
    ),
    (
        "json-schema-without-name",
        chat(response_format=schema_format()),
        "response_format.json_schema.name",
        "missing_required_parameter",
    ),
    (
        "json-schema-name-empty",
        chat(response_format=schema_format(name="")),
        "response_format.json_schema.name",
        "invalid_value",
    ),
    (
        "json-schema-name-too-long",
        chat(response_format=schema_format(name="x" * (MAX_SCHEMA_NAME_LENGTH + 1))),
        "response_format.json_schema.name",
        "invalid_value",
    ),
    ("missing-messages", {"model": "m"}, "messages", "missing_required_parameter"),
    ("empty-messages", {"model": "m", "messages": []}, "messages", "invalid_value"),
    (
        "unknown-role",
        {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
        "messages[0].role",
        "invalid_value",
    ),
    (
        "image-part",
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        },
        "messages[0].content",
        "unsupported_content_type",
    ),
    ("temperature-too-high", chat(temperature=2.5), "temperature", "invalid_value"),
    ("tool-choice-without-tools", chat(tool_choice="required"), "tool_choice", "invalid_value"),
    ("not-json", b'{"model": "m", ', None, "invalid_json"),
]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_gateway_and_engine_refuse_a_bad_request_with_the_same_error(
    body: dict[str, Any] | bytes, param: str | None, code: str
) -> None:
    from_gateway = refusal(gateway_parse, body)
    from_engine = refusal(parse_chat_request, body)
    assert from_gateway == from_engine == (400, "invalid_request_error", param, code)


AT_THE_LIMITS: list[tuple[str, dict[str, Any]]] = [
    ("n", chat(n=MAX_CHOICES)),
    ("stop", chat(stop=["s"] * MAX_STOP_SEQUENCES)),
    ("json-schema-name", chat(response_format=schema_format(name="x" * MAX_SCHEMA_NAME_LENGTH))),
]


@pytest.mark.parametrize(
    "body", [case[1] for case in AT_THE_LIMITS], ids=[case[0] for case in AT_THE_LIMITS]
)
def test_gateway_and_engine_accept_a_request_at_the_shared_limits(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    gateway_parse(raw)
    parse_chat_request(raw)


def imported_modules(package: Path) -> set[str]:
    """Every module a package's sources import, at any depth (function-level imports too)."""
    found: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
    return found


def of_package(modules: set[str], name: str) -> set[str]:
    return {m for m in modules if m == name or m.startswith(name + ".")}


def test_engine_sources_never_import_the_gateway() -> None:
    engine = Path(enclave_backend.__file__).parent
    assert of_package(imported_modules(engine), "gateway") == set()


def test_the_shared_package_imports_neither_side() -> None:
    common = Path(confidential_common.__file__).parent
    modules = imported_modules(common)
    assert of_package(modules, "gateway") == of_package(modules, "enclave_backend") == set()


def test_the_running_engine_loads_no_gateway_module() -> None:
    """Importing every engine module (as the engine process does) leaves the gateway out."""
    probe = (
        "import pkgutil, sys\n"
        "import enclave_backend\n"
        "for info in pkgutil.walk_packages(enclave_backend.__path__, 'enclave_backend.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        __import__(info.name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'gateway' or m.startswith('gateway.'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""

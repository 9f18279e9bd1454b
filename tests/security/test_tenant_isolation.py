"""One key can neither hurt nor read another: each test tries an attack from issue 13
against a real gateway process (TLS, a real llama.cpp engine child) and asserts the guarantee.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth import hash_key
from gateway.ratelimit import estimate_prompt_tokens
from tests.gateway.conftest import (
    KEY,
    MODEL,
    RunningGateway,
    free_port,
    start_gateway,
    stop_gateway,
)

OTHER_KEY = "sk-test-other-0123456789"
TOKENS_KEY = "sk-test-tokens-0123456789"
RPM_KEY = "sk-test-rpm-0123456789"
SERIAL_KEY = "sk-test-serial-0123456789"
METRICS_KEY = "sk-test-metrics-0123456789"
TOKENS_PER_MINUTE = 800


def _config(tmp: Path) -> dict[str, Any]:
    return {
        "listener": {"host": "127.0.0.1", "port": free_port(), "max_auth_failures_per_minute": 5},
        "tls": {"names": ["localhost", "127.0.0.1"], "cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [
            {"name": "flooder", "sha256": hash_key(KEY)},
            {"name": "other", "sha256": hash_key(OTHER_KEY)},
            {
                "name": "tokens",
                "sha256": hash_key(TOKENS_KEY),
                "tokens_per_minute": TOKENS_PER_MINUTE,
            },
            {"name": "rpm", "sha256": hash_key(RPM_KEY), "requests_per_minute": 3},
            {"name": "serial", "sha256": hash_key(SERIAL_KEY), "max_in_flight": 1},
        ],
        # One slot and a one-request queue: easy to overload on purpose.
        "models": [
            {
                "name": MODEL,
                "deployments": [{"kind": "local", "slots": 1, "ctx_per_slot": 512, "queue": 1}],
            }
        ],
        "routing": {"retries": 1, "failure_threshold": 2, "cooldown_s": 30, "probe_interval_s": 1},
        "engines": {
            "restart_backoff_initial_s": 0.2,
            "health_interval_s": 0.5,
            "health_timeout_s": 1.0,
            "unresponsive_after_missed": 2,
            "kill_after_missed": 4,
        },
        "telemetry": {"metrics_key_sha256": hash_key(METRICS_KEY)},
        "attestation": {"provider": "simulated"},
        "run_dir": str(tmp / "run"),
    }


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("tenancy")
    running = start_gateway(tmp, _config(tmp))
    try:
        yield running
    finally:
        stop_gateway(running)


def _chat(
    gateway: RunningGateway, key: str, content: str = "Say hi.", **extra: Any
) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}
    with gateway.client(key) as client:
        return client.post("/v1/chat/completions", json=body)


def _assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert response.headers.get("x-attestation-token")
    return dict(error)


def test_engine_overload_never_takes_the_engine_out_for_other_keys(
    shared: RunningGateway,
) -> None:
    # Far more concurrent requests than one slot and a one-place queue hold: the engine
    # answers "queue full" 503s, which once counted as engine failures and ejected it.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _chat(shared, KEY, max_tokens=24), range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert 200 in statuses and 503 in statuses, statuses
    # Straight after the storm, another key is served: nothing was taken out.
    assert _chat(shared, OTHER_KEY, max_tokens=4).status_code == 200
    with shared.client(OTHER_KEY) as client:
        assert client.get("/ready").json()["models"] == {MODEL: True}


def test_token_limit_holds_under_a_burst(shared: RunningGateway) -> None:
    # Reserved up front (prompt + max_tokens), settled afterwards: concurrent requests
    # cannot all slip under a limit that is only charged when they finish. The text is the
    # attacker's best case: a character the tokenizer splits into more than one token (2.3
    # tokens per character, more than a bytes/3 estimate allows for).
    content = "\u00ff" * 100
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: _chat(shared, TOKENS_KEY, content, max_tokens=24), range(8))
        )
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    busy = [a for a in answers if a.status_code == 503]  # one slot, one queue place
    assert served and refused and len(served) + len(refused) + len(busy) == len(answers)
    used = sum(a.json()["usage"]["total_tokens"] for a in served)
    assert used <= TOKENS_PER_MINUTE, used
    assert refused[0].json()["error"]["type"] == "tokens"


def test_invalid_requests_count_toward_requests_per_minute(shared: RunningGateway) -> None:
    with shared.client(RPM_KEY) as client:
        for body in ({"model": MODEL}, {"model": "no-such-model", "messages": []}, {}):
            assert client.post("/v1/chat/completions", json=body).status_code in {400, 404}
        refused = client.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        )
    assert _assert_openai_error(refused, 429)["code"] == "rate_limit_exceeded"


def test_a_key_cannot_hold_more_requests_in_flight_than_its_limit(shared: RunningGateway) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count to fifty."}],
        "max_tokens": 64,
        "stream": True,
    }
    with shared.client(SERIAL_KEY) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as first:
            assert first.status_code == 200
            second = client.post("/v1/chat/completions", json={**body, "stream": False})
            assert _assert_openai_error(second, 429)["code"] == "concurrency_limit_exceeded"
            for _ in first.iter_lines():
                pass
        # Its place is free again once the stream ended.
        assert client.post("/v1/chat/completions", json={**body, "stream": False}).is_success


def test_metrics_labels_never_take_client_chosen_values(shared: RunningGateway) -> None:
    def series() -> list[str]:
        with shared.client(METRICS_KEY) as client:
            text = client.get("/metrics").text
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    _chat(shared, KEY, max_tokens=2)
    before = series()
    names = [f"made-up-{uuid.uuid4().hex}" for _ in range(10)]
    with shared.client(KEY) as client:
        for name in names:
            body = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
            assert client.post("/v1/chat/completions", json=body).status_code == 404
    after = series()
    assert not any(name in line for line in after for name in names)
    assert len(after) <= len(before) + 12  # the "other" model's series, once


def test_ready_tells_anyone_whether_it_is_ready_but_not_the_model_names(
    shared: RunningGateway,
) -> None:
    with shared.client(None) as client:
        document = client.get("/ready").json()
    assert document == {"ready": True}
    assert MODEL not in json.dumps(document)


def test_deeply_nested_json_anywhere_is_a_signed_400(shared: RunningGateway) -> None:
    deep = "[" * 1500 + "]" * 1500
    deep_object = '{"a":' * 1300 + "1" + "}" * 1300
    bodies = [
        # Tool-call arguments (a JSON string) nested 1,500 levels.
        {
            "model": MODEL,
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": deep},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            ],
        },
    ]
    raw_bodies = [
        # The request JSON itself, and a tool schema, nested past any sane depth.
        '{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "x": ' + deep + "}",
        '{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "tools": '
        '[{"type": "function", "function": {"name": "f", "parameters": ' + deep_object + "}}]}",
        '{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], '
        '"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": '
        + deep_object
        + "}}}",
    ]
    with shared.client(KEY) as client:
        answers = [client.post("/v1/chat/completions", json=b) for b in bodies]
        answers += [
            client.post(
                "/v1/chat/completions",
                content=raw.encode(),
                headers={"Content-Type": "application/json"},
            )
            for raw in raw_bodies
        ]
    for answer in answers:
        _assert_openai_error(answer, 400)
    assert _chat(shared, KEY, max_tokens=2).status_code == 200


@pytest.fixture
def hangable(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path, _config(tmp_path))
    try:
        yield running
    finally:
        for pid in running.engine_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        stop_gateway(running)


def test_metrics_key_guessing_is_refused_like_api_key_guessing(
    hangable: RunningGateway,
) -> None:
    # (This gateway of its own: the guard then refuses the address on every route.) A
    # rotating X-Forwarded-For changes nothing: no proxy is trusted, the TCP peer counts.
    with hangable.client("sk-wrong-guess-0000000000") as client:
        statuses = [
            client.get("/metrics", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(7)
        ]
        assert statuses[:5] == [401] * 5 and statuses[-1] == 429
        locked = client.post("/v1/chat/completions", json={"model": MODEL})
    assert locked.status_code == 429


def test_a_hung_engine_is_noticed_and_its_requests_do_not_wait_for_the_timeout(
    hangable: RunningGateway,
) -> None:
    (pid,) = hangable.engine_pids()
    os.kill(pid, signal.SIGSTOP)  # alive, socket open, answering nothing
    started = time.monotonic()
    answer = _chat(hangable, KEY, max_tokens=4)
    # Killed and restarted by the gateway: the request fails over or fails, in seconds and
    # not after the 600 s request timeout (the bound here is generous on purpose).
    assert answer.status_code in {200, 503}, answer.text
    assert time.monotonic() - started < 120
    deadline = time.monotonic() + 120
    while True:
        pids = hangable.engine_pids()
        if pids and pids != [pid] and _chat(hangable, KEY, max_tokens=2).status_code == 200:
            break
        assert time.monotonic() < deadline, "the hung engine was not replaced"
        time.sleep(0.5)
    assert "is hung" in hangable.log_path.read_text()


def test_stored_tokens_are_read_only_by_the_key_that_caused_them(shared: RunningGateway) -> None:
    answer = _chat(shared, KEY, max_tokens=2)
    completion_id = answer.json()["id"]
    assert completion_id.startswith("chatcmpl-")
    path = f"/v1/attestations/{completion_id}"
    with shared.client(None) as anonymous:
        assert anonymous.get(path).status_code == 401
    with shared.client(OTHER_KEY) as other:
        assert other.get(path).status_code == 404  # the same answer as an unknown id
    with shared.client(KEY) as owner:
        stored = owner.get(path).json()
    assert stored["attestation_token"] == answer.headers["x-attestation-token"]


def test_ids_are_the_gateways_and_unauthenticated_traffic_is_not_stored(
    shared: RunningGateway,
) -> None:
    first = _chat(shared, KEY, max_tokens=2).json()["id"]
    second = _chat(shared, KEY, max_tokens=2).json()["id"]
    assert first != second
    # An unauthenticated request naming someone's completion id stores nothing over it.
    with shared.client(None) as anonymous:
        refused = anonymous.post(
            "/v1/chat/completions", json={"model": MODEL}, headers={"x-request-id": first}
        )
    assert refused.status_code == 401
    with shared.client(KEY) as owner:
        stored = owner.get(f"/v1/attestations/{first}").json()["attestation_token"]
    payload = json.loads(_b64(stored.split(".")[1]))
    assert payload["status"] == 200 and payload["jti"] == first


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_a_key_does_not_learn_another_keys_prompts_from_cached_tokens(
    shared: RunningGateway,
) -> None:
    def prompt(code: str) -> str:
        return f"The merger code word is {code}. Reply with one word."

    def cached(key: str, content: str) -> int:
        usage = _chat(shared, key, content, max_tokens=2).json()["usage"]
        return int(usage["prompt_tokens_details"]["cached_tokens"])

    secret, wrong = prompt(uuid.uuid4().hex), prompt(uuid.uuid4().hex)
    cached(KEY, secret)
    assert cached(KEY, secret) > 0  # a key's own prefix is reused
    # The other key guesses, wrong and then right, each time straight after the owner sent
    # the secret (one slot: the same conditions). The counts must not tell them apart.
    miss = cached(OTHER_KEY, wrong)
    cached(KEY, secret)
    hit = cached(OTHER_KEY, secret)
    assert hit == miss


@pytest.mark.parametrize(
    "content",
    ["\u00ff" * 100, "\u0fff" * 60, "7" * 300, "!?" * 150, "Say hi.", "\U0001f600" * 50],
)
def test_the_reservation_bounds_the_real_prompt_whatever_the_text(
    shared: RunningGateway, content: str
) -> None:
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 1},
        ensure_ascii=False,
    ).encode("utf-8")
    with shared.client(KEY) as client:
        answer = client.post(
            "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["prompt_tokens"] <= estimate_prompt_tokens(body)

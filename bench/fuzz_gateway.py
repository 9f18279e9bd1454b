"""Fuzz the gateway from its own OpenAPI document (schemathesis strategies, our checks).

    python -m bench.fuzz_gateway [--requests 5000] [--seed 1] [--json FILE]

A real gateway process (TLS, PII with NER, signing) in front of an instant mock upstream.
Requests come from schemathesis' strategies for every operation in ``/openapi.json``, in
positive and negative generation modes; a share carry a valid key and model so they travel
the whole pipeline. Checks on every response: no 5xx, an answer within 15 s (no hangs), and
every 4xx in OpenAI's error shape. Prints JSON and a table; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import ssl
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port, start_gateway, start_mock, stop
from gateway.auth import hash_key

KEY = "sk-fuzz-" + "7" * 24
HANG_S = 15.0


def start_stack(tmp: Path) -> tuple[list[subprocess.Popen[bytes]], str, ssl.SSLContext | bool]:
    log = (tmp / "servers.log").open("wb")
    mock_process, mock = start_mock(log)
    config = {
        # Fuzzing sends many bad keys from one address: keep the brute-force guard out of the
        # way, so every request exercises the pipeline rather than the 429.
        "listener": {
            "host": "127.0.0.1",
            "port": free_port(),
            "max_body_bytes": 262144,
            "max_auth_failures_per_minute": 1000000,
        },
        "tls": {"cert_out": str(tmp / "cert.pem")},
        "api_keys": [{"name": "fuzz", "sha256": hash_key(KEY)}],
        "models": [
            {
                "name": "m",
                "deployments": [{"kind": "remote", "base_url": mock + "/v1", "model": "mock"}],
            }
        ],
        "attestation": {"provider": "simulated"},
        "pii": {"ner": "on"},
        "run_dir": str(tmp / "run"),
    }
    process, base, verify = start_gateway(tmp, "gateway", config, log)
    return [mock_process, process], base, verify


def generate_cases(base: str, context: ssl.SSLContext | bool, count: int, seed: int) -> list[Any]:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.core.result import Err

    document = httpx.get(base + "/openapi.json", verify=context).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the gateway's own document must be valid
        operations.append(result.ok())
    cases: list[Any] = []
    # Some strategies run dry early (few parameters to vary); ask the others for more.
    per_strategy = max(1, 3 * count // (2 * len(operations)) + 1)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=per_strategy,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def collect(case: Any) -> None:
                cases.append(case)

            # E.g. a parameterless GET has no "negative" form: nothing to collect there.
            with contextlib.suppress(Unsatisfiable):
                collect()
    random.Random(seed).shuffle(cases)
    return cases[:count]


def as_request(case: Any, rng: random.Random) -> tuple[str, str, dict[str, str], Any]:
    path = case.formatted_path
    headers = {k: str(v) for k, v in (case.headers or {}).items()}
    body = case.body
    if rng.random() < 0.6:
        headers["Authorization"] = f"Bearer {KEY}"
        if isinstance(body, dict) and rng.random() < 0.7:
            body = {**body, "model": "m"}
    return case.method, path, headers, body


def check(response: httpx.Response) -> str | None:
    if response.status_code >= 500:
        return f"server error {response.status_code}: {response.text[:200]}"
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            return f"{response.status_code} not in OpenAI's error shape: {response.text[:200]}"
        if set(error) != {"message", "type", "param", "code"} or not error["message"]:
            return f"{response.status_code} error object malformed: {error}"
    return None


def fuzz(count: int, seed: int) -> dict[str, Any]:
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    slowest = 0.0
    with tempfile.TemporaryDirectory() as tmp_name:
        processes, base, context = start_stack(Path(tmp_name))
        try:
            # A few cases cannot be sent by the client library at all; generate a margin.
            cases = generate_cases(base, context, int(count * 1.1), seed)
            rng = random.Random(seed)
            with httpx.Client(base_url=base, verify=context, timeout=HANG_S) as client:
                for case in cases:
                    if sum(n for s, n in statuses.items() if s >= 0) >= count:
                        break
                    method, path, headers, body = as_request(case, rng)
                    started = time.monotonic()
                    try:
                        if isinstance(body, (dict, list, str, int, float, bool)) or body is None:
                            content = None if body is None else json.dumps(body).encode()
                        elif isinstance(body, bytes):
                            content = body
                        else:
                            content = None  # schemathesis' NotSet: no body at all
                        headers.setdefault("content-type", "application/json")
                        response = client.request(
                            method,
                            path,
                            headers=headers,
                            content=content,
                            params=case.query or None,
                        )
                    except httpx.TimeoutException:
                        failures.append(f"hang: {method} {path}")
                        continue
                    except (httpx.HTTPError, UnicodeEncodeError, ValueError) as exc:
                        # The client library refused to send it (e.g. a header it cannot
                        # encode): not the gateway's answer, so not counted either way.
                        statuses[-1] += 1
                        del exc
                        continue
                    slowest = max(slowest, time.monotonic() - started)
                    statuses[response.status_code] += 1
                    problem = check(response)
                    if problem:
                        failures.append(f"{method} {path}: {problem}")
            alive = httpx.get(base + "/health", verify=context, timeout=5).status_code == 200
        finally:
            stop(processes)
    sent = sum(n for s, n in statuses.items() if s >= 0)
    return {
        "requests": sent,
        "not_sent_by_client": statuses.get(-1, 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items()) if k >= 0},
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "hangs": sum(1 for f in failures if f.startswith("hang")),
        "failures": failures[:20],
        "failure_count": len(failures),
        "slowest_s": round(slowest, 3),
        "gateway_alive_after": alive,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=default_json("fuzz"))
    args = parser.parse_args()
    report = emit("fuzz", {"seed": args.seed, **fuzz(args.requests, args.seed)}, args.json)
    malformed = report["failure_count"] - report["server_errors"] - report["hangs"]
    headers = ["requests", "5xx", "hangs", "malformed errors", "slowest s", "statuses"]
    row = [
        report["requests"],
        report["server_errors"],
        report["hangs"],
        malformed,
        report["slowest_s"],
        " ".join(f"{code}: {n}" for code, n in report["statuses"].items()),
    ]
    print()
    print(table(headers, [row]))
    print(f"\n{describe(report)}")
    return 0 if report["failure_count"] == 0 and report["gateway_alive_after"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Tool calling on the default model: validity, latency, and what the grammar costs per token.

    python bench/tool_bench.py [--json bench/results/tools.json] [--no-peer]

50 prompts (10 tool sets x 5 questions) go to the engine (enclave_backend, the packaged
SmolLM2 GGUF) with ``tool_choice: "required"`` and with ``"auto"``. A call is valid when the
answer finished by ``tool_calls``, names a declared function, and its arguments parse as JSON
and match the function's parameter schema (jsonschema). Latency is the whole request.

Grammar cost: the same prompts streamed with tools (``required``, the grammar on every token)
and without (plain text), compared by decode time per token after the first token.

Peer, same run, same GGUF, threads and slots: llama-server built from the pinned sdist
(bench/build_llama_server.sh), run with ``--jinja``, given the same requests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import free_port, stop  # noqa: E402
from enclave_backend.model_file import packaged_model_path  # noqa: E402


def fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
TOOL_SETS: list[tuple[list[dict], list[str]]] = [
    (
        [
            fn(
                "get_weather",
                "Current weather in a city",
                {"city": STR, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                ["city"],
            )
        ],
        [
            "What's the weather in Paris?",
            "Is it cold in Oslo today?",
            "Weather for Tokyo in fahrenheit, please.",
            "How hot is Cairo right now?",
            "Do I need an umbrella in London?",
        ],
    ),
    (
        [
            fn("multiply", "Multiply two numbers", {"a": NUM, "b": NUM}, ["a", "b"]),
            fn("add", "Add two numbers", {"a": NUM, "b": NUM}, ["a", "b"]),
        ],
        [
            "What is 12 times 7?",
            "Add 3.5 and 4.",
            "Multiply 6 by 9.",
            "What's 100 plus 250?",
            "Compute 8 x 8.",
        ],
    ),
    (
        [fn("search_web", "Search the web", {"query": STR, "max_results": INT}, ["query"])],
        [
            "Find recent news about solar panels.",
            "Search for the best pizza recipe.",
            "Look up the height of Mount Everest.",
            "Who won the 2018 World Cup? Search it.",
            "Search for Python asyncio tutorials.",
        ],
    ),
    (
        [
            fn(
                "create_event",
                "Create a calendar event",
                {"title": STR, "date": STR, "time": STR, "duration_minutes": INT},
                ["title", "date"],
            ),
            fn("list_events", "List calendar events on a date", {"date": STR}, ["date"]),
        ],
        [
            "Schedule a dentist appointment on 2026-12-03 at 10:00.",
            "What's on my calendar for 2026-12-05?",
            "Add a 30 minute team sync tomorrow at 9.",
            "Create an event called Launch on 2027-01-10.",
            "List my events for Friday.",
        ],
    ),
    (
        [
            fn(
                "send_email",
                "Send an e-mail",
                {"to": STR, "subject": STR, "body": STR},
                ["to", "subject", "body"],
            )
        ],
        [
            "Email the team that the build is green.",
            "Send a thank-you note to the customer.",
            "Write to support about my broken login.",
            "Tell finance the invoice is paid, by e-mail.",
            "Send an e-mail reminding everyone of Friday's party.",
        ],
    ),
    (
        [
            fn("get_stock_price", "Latest price of a stock ticker", {"ticker": STR}, ["ticker"]),
            fn(
                "get_exchange_rate",
                "Exchange rate between two currencies",
                {"base": STR, "quote": STR},
                ["base", "quote"],
            ),
        ],
        [
            "What is AAPL trading at?",
            "How many yen is a dollar?",
            "Price of MSFT?",
            "EUR to USD rate?",
            "Check the TSLA stock price.",
        ],
    ),
    (
        [
            fn(
                "translate",
                "Translate text into a language",
                {"text": STR, "target_language": STR},
                ["text", "target_language"],
            )
        ],
        [
            "Translate 'good morning' into Spanish.",
            "How do you say 'thank you' in Japanese?",
            "Translate 'where is the station' to German.",
            "Put 'I love cheese' into French.",
            "Say 'happy birthday' in Italian.",
        ],
    ),
    (
        [
            fn("set_timer", "Start a timer", {"minutes": INT, "label": STR}, ["minutes"]),
            fn("set_alarm", "Set an alarm", {"time": STR}, ["time"]),
        ],
        [
            "Set a timer for 10 minutes.",
            "Wake me up at 6:30.",
            "Timer for pasta, 12 minutes.",
            "Set an alarm for 7 am.",
            "Remind me in 5 minutes.",
        ],
    ),
    (
        [
            fn("lookup_order", "Look up an order by id", {"order_id": STR}, ["order_id"]),
            fn("cancel_order", "Cancel an order", {"order_id": STR, "reason": STR}, ["order_id"]),
        ],
        [
            "Where is order A1234?",
            "Cancel order B-77, it arrived broken.",
            "Status of order 99812?",
            "Please cancel my order X5.",
            "Track order Z-100.",
        ],
    ),
    (
        [
            fn(
                "get_directions",
                "Directions between two places",
                {
                    "origin": STR,
                    "destination": STR,
                    "mode": {"type": "string", "enum": ["driving", "walking", "transit"]},
                },
                ["origin", "destination"],
            )
        ],
        [
            "How do I walk from the Louvre to Notre-Dame?",
            "Drive from Berlin to Hamburg.",
            "Transit from JFK to Times Square?",
            "Directions from home to the office.",
            "Route from Rome to Florence by car.",
        ],
    ),
]
assert sum(len(q) for _, q in TOOL_SETS) == 50


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
    }


def valid_calls(body: dict[str, Any], tools: list[dict]) -> tuple[bool, int]:
    """(whether every call is valid and there is one, the number of calls)."""
    choice = body["choices"][0]
    calls = choice["message"].get("tool_calls") or []
    if choice["finish_reason"] != "tool_calls" or not calls:
        return False, len(calls)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    for call in calls:
        name = call["function"]["name"]
        if name not in schemas:
            return False, len(calls)
        try:
            jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[name])
        except (ValueError, jsonschema.ValidationError):
            return False, len(calls)
    return True, len(calls)


def run_calls(client: httpx.Client, model: str, choice: str) -> dict[str, Any]:
    valid = called = 0
    latencies = []
    for tools, questions in TOOL_SETS:
        for question in questions:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": question}],
                "tools": tools,
                "tool_choice": choice,
                "max_tokens": 128,
                "temperature": 0,
            }
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                continue
            ok, count = valid_calls(response.json(), tools)
            valid += ok
            called += count > 0
    return {
        "prompts": 50,
        "valid_calls": valid,
        "validity_rate": valid / 50,
        "answered_with_calls": called,
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(sorted(latencies)[int(0.95 * len(latencies)) - 1], 3),
    }


def per_token_ms(client: httpx.Client, model: str, with_tools: bool) -> float:
    """Median decode time per token after the first, over the 50 prompts, streamed."""
    samples = []
    for tools, questions in TOOL_SETS:
        for question in questions:
            body: dict[str, Any] = {
                "model": model,
                "messages": [{"role": "user", "content": question}],
                "max_tokens": 48,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            if with_tools:
                body |= {"tools": tools, "tool_choice": "required"}
            stamps = []
            tokens = 0
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
                    if chunk.get("choices") and chunk["choices"][0]["delta"] not in (
                        {},
                        {"role": "assistant", "content": ""},
                    ):
                        stamps.append(time.perf_counter())
            if tokens > 2 and len(stamps) > 1:
                samples.append((stamps[-1] - stamps[0]) * 1000 / (tokens - 1))
    return round(statistics.median(samples), 3)


def start(command: list[str], health: str, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{command[0]} did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "tools.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true", help="skip llama-server")
    args = parser.parse_args()
    model = packaged_model_path()
    tmp = Path(tempfile.mkdtemp(prefix="tool-bench-"))
    servers: dict[str, tuple[str, str]] = {}
    processes = []
    try:
        port = free_port()
        processes.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "enclave_backend",
                    "--port",
                    str(port),
                    "--slots",
                    "2",
                    "--ctx-per-slot",
                    "2048",
                    "--threads",
                    str(args.threads),
                    "--model-name",
                    "bench",
                ],
                f"http://127.0.0.1:{port}/health",
                tmp / "engine.log",
            )
        )
        servers["enclave_backend"] = (f"http://127.0.0.1:{port}", "bench")
        if not args.no_peer:
            build = subprocess.run(
                ["bash", str(ROOT / "bench" / "build_llama_server.sh")],
                capture_output=True,
                text=True,
            )
            if build.returncode == 0:
                port = free_port()
                binary = build.stdout.strip()
                processes.append(
                    start(
                        [
                            binary,
                            "-m",
                            str(model),
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                            "-np",
                            "2",
                            "-c",
                            "4096",
                            "-t",
                            str(args.threads),
                            "--jinja",
                            "--alias",
                            "bench",
                            "--log-disable",
                        ],
                        f"http://127.0.0.1:{port}/health",
                        tmp / "llama-server.log",
                    )
                )
                servers["llama-server --jinja"] = (f"http://127.0.0.1:{port}", "bench")
            else:
                print(f"llama-server unavailable: {build.stderr[-400:]}", file=sys.stderr)
        results: dict[str, Any] = {"machine": machine(), "model": model.name, "servers": {}}
        for name, (url, served) in servers.items():
            with httpx.Client(base_url=url, timeout=300) as client:
                entry = {
                    "required": run_calls(client, served, "required"),
                    "auto": run_calls(client, served, "auto"),
                    "ms_per_token_plain": per_token_ms(client, served, with_tools=False),
                    "ms_per_token_tools": per_token_ms(client, served, with_tools=True),
                }
                entry["grammar_cost_ratio"] = round(
                    entry["ms_per_token_tools"] / entry["ms_per_token_plain"], 3
                )
                results["servers"][name] = entry
                print(json.dumps({name: entry}), flush=True)  # progress, should a later server fail
    finally:
        stop(processes)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(
        f"\n{'server':<22} {'required valid':>15} {'auto valid':>11} {'auto calls':>11} {'p50 s':>7} {'ms/tok plain':>13} {'ms/tok tools':>13} {'cost':>6}"
    )
    for name, e in results["servers"].items():
        print(
            f"{name:<22} {e['required']['valid_calls']:>12}/50 {e['auto']['valid_calls']:>8}/50 {e['auto']['answered_with_calls']:>8}/50 {e['required']['latency_p50_s']:>7} {e['ms_per_token_plain']:>13} {e['ms_per_token_tools']:>13} {e['grammar_cost_ratio']:>6}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

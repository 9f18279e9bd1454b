"""Tool calling on the default model: validity, latency, and what the grammar costs per token.

    python -m bench.tool_bench [--json FILE] [--threads 2] [--no-peer] [--llama-server BIN]

50 prompts (10 tool sets x 5 questions) go to the engine (enclave_backend, the packaged
SmolLM2 GGUF) with ``tool_choice: "required"`` and with ``"auto"``. A call is valid when the
answer finished by ``tool_calls``, names a declared function, and its arguments parse as JSON
and match the function's parameter schema (jsonschema). Latency is the whole request.

Grammar cost: the same prompts streamed with tools (``required``, the grammar on every token)
and without (plain text), compared by decode time per token after the first token.

Peer, same run, same GGUF, threads and slots: llama-server built from the pinned sdist
(bench/build_llama_server.sh; or ``--llama-server``, ``$LLAMA_SERVER``), run with ``--jinja``,
given the same requests. Prints JSON (also written to ``--json``) and a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port, llama_server_binary, stop, wait_ready
from bench.stats import median, ratio, summary
from enclave_backend.model_file import packaged_model_path

Tool = dict[str, Any]


def fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Tool:
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
TOOL_SETS: list[tuple[list[Tool], list[str]]] = [
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


def valid_calls(body: dict[str, Any], tools: list[Tool]) -> tuple[bool, int]:
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
        **summary(latencies, (50, 95), unit="s", prefix="latency_"),
    }


def per_token_ms(client: httpx.Client, model: str, with_tools: bool) -> float | None:
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
    return round(median(samples), 3) if samples else None


def start(command: list[str], base: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(base, "/health", process, timeout=180)
    except RuntimeError as exc:
        stop([process])
        raise RuntimeError(f"{command[0]}: {exc}: {log.read_text()[-2000:]}") from exc
    return process


def engine_command(model: Path, port: int, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "enclave_backend",
        "--model",
        str(model),
        "--port",
        str(port),
        "--slots",
        "2",
        "--ctx-per-slot",
        "2048",
        "--threads",
        str(threads),
        "--model-name",
        "bench",
    ]


def llama_server_command(binary: Path, model: Path, port: int, threads: int) -> list[str]:
    return [
        str(binary),
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
        str(threads),
        "--jinja",
        "--alias",
        "bench",
        "--log-disable",
    ]


def measure(url: str, served: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=300) as client:
        plain = per_token_ms(client, served, with_tools=False)
        tools = per_token_ms(client, served, with_tools=True)
        return {
            "required": run_calls(client, served, "required"),
            "auto": run_calls(client, served, "auto"),
            "ms_per_token_plain": plain,
            "ms_per_token_tools": tools,
            "grammar_cost_ratio": ratio(tools, plain),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=default_json("tools"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: packaged)")
    parser.add_argument("--no-peer", action="store_true", help="skip llama-server")
    parser.add_argument(
        "--llama-server", type=Path, default=None, help="llama-server binary (default: built)"
    )
    args = parser.parse_args()
    model = args.model or packaged_model_path()
    servers: dict[str, tuple[str, str]] = {}
    processes: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tool-bench-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            engine = engine_command(model, port, args.threads)
            processes.append(start(engine, base, tmp / "engine.log"))
            servers["enclave_backend"] = (base, "bench")
            binary, why_not = (
                (None, "--no-peer") if args.no_peer else llama_server_binary(args.llama_server)
            )
            if binary is not None:
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                peer = llama_server_command(binary, model, port, args.threads)
                processes.append(start(peer, base, tmp / "llama-server.log"))
                servers["llama-server --jinja"] = (base, "bench")
            elif not args.no_peer:
                print(f"llama-server unavailable: {why_not}", file=sys.stderr)
            for name, (url, served) in servers.items():
                results[name] = measure(url, served)
                # Progress, should a later server fail.
                print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
        finally:
            stop(processes)
    report = emit("tools", {"model": model.name, "servers": results}, args.json)
    headers = ["server", "required valid", "auto valid", "auto calls", "p50 s"]
    rows = [
        [
            name,
            f"{e['required']['valid_calls']}/50",
            f"{e['auto']['valid_calls']}/50",
            f"{e['auto']['answered_with_calls']}/50",
            e["required"]["latency_p50_s"],
            e["ms_per_token_plain"],
            e["ms_per_token_tools"],
            e["grammar_cost_ratio"],
        ]
        for name, e in report["servers"].items()
    ]
    print()
    print(table([*headers, "ms/tok plain", "ms/tok tools", "cost"], rows))
    print(f"\n{describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

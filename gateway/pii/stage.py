"""The PII stage: between validation and routing on the way in, restore on the way out.

On the way in, every string the upstream will receive is scanned: message contents of every
role (and their text parts), names, tool definitions (descriptions, schemas), tool-call
arguments (parsed as JSON when they are JSON), stop sequences, response-format schemas and
``user``. Only ``model``, ``role`` and ``type`` values, which the protocol already limits
to identifiers, are not. Depending on the route's policy each finding becomes a placeholder
(tokenize), a bare type label (redact), or a refusal naming the types (block).

If detection fails or runs out of time, the request fails with a 503 and goes nowhere.
Values never appear in logs, errors or notes; per-type counts and the policy digest do.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import PIIDetectionConfig, RoutePIIPolicy
from gateway.errors import GatewayError, bad_request
from gateway.pii.detector import DetectionError, Finding, PIIDetector
from gateway.pii.restore import StreamRestorer, restore
from gateway.pii.vault import LITERAL, PLACEHOLDER, PlaceholderVault
from gateway.pipeline import ChatExchange, Chunk

log = logging.getLogger("gateway.pii")

# Values the protocol restricts to identifiers; everything else is scanned.
UNSCANNED_KEYS = frozenset({"model", "role", "type"})
# Types used for "anything of this kind", e.g. a route that lists PERSON covers NER names.
ALIASES = {"EMAIL": "EMAIL_ADDRESS", "PHONE": "PHONE_NUMBER", "SSN": "US_SSN", "IBAN": "IBAN_CODE"}


def detection_failed() -> GatewayError:
    return GatewayError(
        503,
        "PII detection failed, so the request was not forwarded. Retry; if it persists, the "
        "gateway operator should check the detector.",
        type="server_error",
        code="pii_detection_failed",
        headers={"Retry-After": "1"},
    )


@dataclass
class RoutePolicy:
    """A route's PII policy, resolved against what the detector can find."""

    mode: str
    entities: frozenset[str]
    redact_introduced: bool
    digest: str

    @classmethod
    def resolve(cls, policy: RoutePIIPolicy, detector: PIIDetector) -> RoutePolicy:
        known = set(detector.entity_types)
        wanted = {ALIASES.get(e.upper(), e.upper()) for e in policy.entities} or known
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(f"unknown PII entity types {unknown}; known: {sorted(known)}")
        canonical = {
            "mode": policy.mode,
            "entities": sorted(wanted),
            "redact_introduced": policy.redact_introduced,
            "ner": detector.uses_ner,
            "allow_raw_pii": policy.allow_raw_pii,
        }
        digest = hashlib.sha256(
            json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        return cls(policy.mode, frozenset(wanted), policy.redact_introduced, digest)


@dataclass
class _Slot:
    """Where a scanned string lives, so the transformed one can be put back."""

    container: Any
    key: Any
    text: str
    json_doc: Any = None  # parsed tool-call arguments, re-serialised after transformation
    parts: list[_Slot] = field(default_factory=list)


def _collect(node: Any, out: list[_Slot]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in UNSCANNED_KEYS and isinstance(value, str):
                continue
            if key == "arguments" and isinstance(value, str):
                out.append(_arguments_slot(node, key, value))
            elif isinstance(value, str):
                out.append(_Slot(node, key, value))
            else:
                _collect(value, out)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, str):
                out.append(_Slot(node, index, value))
            else:
                _collect(value, out)


def _arguments_slot(container: dict[str, Any], key: str, text: str) -> _Slot:
    try:
        doc = json.loads(text)
    except ValueError:
        return _Slot(container, key, text)
    holder = [doc]
    parts: list[_Slot] = []
    if isinstance(doc, str):
        parts.append(_Slot(holder, 0, doc))
    else:
        _collect(doc, parts)
    return _Slot(container, key, text, json_doc=holder, parts=parts)


def _literal_findings(text: str) -> list[Finding]:
    return [Finding(m.start(), m.end(), LITERAL, 1.0) for m in PLACEHOLDER.finditer(text)]


class PIIStage:
    name = "pii"

    def __init__(
        self,
        detector: PIIDetector,
        policies: dict[str, RoutePolicy],
        config: PIIDetectionConfig,
    ) -> None:
        self._detector = detector
        self._policies = policies
        self._config = config

    @property
    def uses_ner(self) -> bool:
        return self._detector.uses_ner

    def policy(self, model: str) -> RoutePolicy:
        return self._policies[model]

    # -- request side -----------------------------------------------------------------------
    async def on_request(self, exchange: ChatExchange) -> None:
        policy = self._policies[exchange.request.model]
        exchange.notes["pii"] = {"policy_digest": policy.digest, "mode": policy.mode, "counts": {}}
        if policy.mode == "off":
            return
        slots: list[_Slot] = []
        _collect(exchange.upstream_body, slots)
        leaves = [p for s in slots for p in (s.parts or [s])]
        started = time.perf_counter()
        try:
            findings = await asyncio.wait_for(
                self._detect_all([leaf.text for leaf in leaves]), timeout=self._config.timeout_s
            )
        except (DetectionError, TimeoutError) as exc:
            log.error(
                "PII detection failed (%s); request %s refused",
                type(exc).__name__,
                exchange.request_id,
            )
            raise detection_failed() from None
        exchange.notes["pii_detect_ms"] = round((time.perf_counter() - started) * 1000, 3)
        relevant = [[f for f in found if f.entity_type in policy.entities] for found in findings]
        if policy.mode == "block":
            types = sorted({f.entity_type for found in relevant for f in found})
            if types:
                raise bad_request(
                    "This route does not accept personal data; the request contains: "
                    f"{', '.join(types)}. Remove it, or use a route that tokenizes it.",
                    param="messages",
                    code="pii_blocked",
                )
            return
        vault = PlaceholderVault()
        for leaf, found in zip(leaves, relevant, strict=True):
            leaf.container[leaf.key] = self._replace(leaf.text, found, vault, policy.mode)
        for slot in slots:
            if slot.json_doc is not None:
                slot.container[slot.key] = json.dumps(slot.json_doc[0], ensure_ascii=False)
        exchange.notes["pii"]["counts"] = vault.counts()
        if policy.mode == "tokenize":
            exchange.notes["pii_vault"] = vault

    async def _detect_all(self, texts: list[str]) -> list[list[Finding]]:
        heavy = self._detector.uses_ner or sum(map(len, texts)) > self._config.offload_chars
        if heavy:
            return await asyncio.to_thread(lambda: [self._detector.detect(t) for t in texts])
        return [self._detector.detect(t) for t in texts]

    @staticmethod
    def _replace(text: str, findings: list[Finding], vault: PlaceholderVault, mode: str) -> str:
        spans = sorted([*findings, *_literal_findings(text)], key=lambda f: f.start)
        if not spans:
            return text
        out: list[str] = []
        cursor = 0
        for finding in spans:
            if finding.start < cursor:
                continue  # a literal inside a finding: the finding already hides it
            out.append(text[cursor : finding.start])
            value = text[finding.start : finding.end]
            if mode == "tokenize" or finding.entity_type == LITERAL:
                out.append(vault.placeholder_for(finding.entity_type, value))
            else:
                out.append(f"<{finding.entity_type}>")
            cursor = finding.end
        out.append(text[cursor:])
        return "".join(out)

    # -- response side ----------------------------------------------------------------------
    def _introduced_redactor(self, exchange: ChatExchange) -> Callable[[str], str] | None:
        policy = self._policies[exchange.request.model]
        if not policy.redact_introduced or policy.mode == "off":
            return None

        def redact(text: str) -> str:
            try:
                found = [f for f in self._detector.detect(text) if f.entity_type in policy.entities]
            except DetectionError:
                return "[response withheld: PII check failed]"
            for f in sorted(found, key=lambda f: f.start, reverse=True):
                if PLACEHOLDER.fullmatch(text, f.start, f.end):
                    continue
                text = text[: f.start] + f"<{f.entity_type}>" + text[f.end :]
            return text

        return redact

    async def on_completion(self, exchange: ChatExchange, completion: Chunk) -> Chunk:
        vault: PlaceholderVault | None = exchange.notes.get("pii_vault")
        redact = self._introduced_redactor(exchange)
        if vault is None and redact is None:
            return completion
        vault = vault or PlaceholderVault()
        for choice in completion.get("choices") or ():
            message = choice.get("message") or {}
            for key in ("content", "refusal"):
                if isinstance(message.get(key), str):
                    text = redact(message[key]) if redact else message[key]
                    message[key] = restore(text, vault)
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                if isinstance(function.get("arguments"), str):
                    function["arguments"] = restore(function["arguments"], vault, json_escaped=True)
        return completion

    async def on_stream(
        self, exchange: ChatExchange, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]:
        vault: PlaceholderVault | None = exchange.notes.get("pii_vault")
        redact = self._introduced_redactor(exchange)
        shape = _StreamShape(exchange.request.model)
        if vault is None and redact is None:
            async for chunk in chunks:
                yield shape.fill(chunk)
            return
        restorers = _Restorers(vault or PlaceholderVault(), redact)
        async for chunk in chunks:
            chunk = shape.fill(chunk)
            for choice in chunk.get("choices") or ():
                index = choice.get("index", 0)
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    delta["content"] = restorers.content(index).push(delta["content"])
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") or {}
                    if isinstance(function.get("arguments"), str):
                        key = (index, call.get("index", 0))
                        function["arguments"] = restorers.arguments(key).push(function["arguments"])
                if choice.get("finish_reason") is not None:
                    # Release what was held back in this same chunk, before its finish.
                    _append(delta, restorers.flush(index))
                    choice["delta"] = delta
            yield chunk
        for index in restorers.open_choices():
            tail = restorers.flush(index)
            if tail:
                yield shape.fill(
                    {"choices": [{"index": index, "delta": tail, "finish_reason": None}]}
                )


def _append(delta: dict[str, Any], tail: dict[str, Any] | None) -> None:
    if not tail:
        return
    if "content" in tail:
        delta["content"] = (delta.get("content") or "") + tail["content"]
    if "tool_calls" in tail:
        delta.setdefault("tool_calls", []).extend(tail["tool_calls"])


class _Restorers:
    def __init__(self, vault: PlaceholderVault, redact: Callable[[str], str] | None) -> None:
        self._vault = vault
        self._redact = redact
        self._content: dict[int, _LineRedactingRestorer | StreamRestorer] = {}
        self._arguments: dict[tuple[int, int], StreamRestorer] = {}

    def content(self, index: int) -> _LineRedactingRestorer | StreamRestorer:
        if index not in self._content:
            self._content[index] = (
                _LineRedactingRestorer(self._vault, self._redact)
                if self._redact
                else StreamRestorer(self._vault)
            )
        return self._content[index]

    def arguments(self, key: tuple[int, int]) -> StreamRestorer:
        if key not in self._arguments:
            self._arguments[key] = StreamRestorer(self._vault, json_escaped=True)
        return self._arguments[key]

    def open_choices(self) -> list[int]:
        return sorted({*self._content, *(k[0] for k in self._arguments)})

    def flush(self, index: int) -> dict[str, Any] | None:
        delta: dict[str, Any] = {}
        restorer = self._content.pop(index, None)
        if restorer is not None:
            tail = restorer.finish()
            if tail:
                delta["content"] = tail
        calls = []
        for key in sorted(k for k in self._arguments if k[0] == index):
            tail = self._arguments.pop(key).finish()
            if tail:
                calls.append({"index": key[1], "function": {"arguments": tail}})
        if calls:
            delta["tool_calls"] = calls
        return delta or None


class _LineRedactingRestorer:
    """Restores and, for routes that redact what the upstream introduced, checks whole lines.

    Detection needs context, so text is released a line at a time (or every
    ``MAX_LINE`` characters), at the cost of some latency on such routes.
    """

    MAX_LINE = 400

    def __init__(self, vault: PlaceholderVault, redact: Callable[[str], str] | None) -> None:
        self._vault = vault
        self._redact = redact
        self._held = ""

    def _release(self, text: str) -> str:
        if self._redact is not None:
            text = self._redact(text)
        return restore(text, self._vault)

    def push(self, text: str) -> str:
        self._held += text
        cut = self._held.rfind("\n") + 1
        if cut == 0 and len(self._held) >= self.MAX_LINE:
            cut = self._held.rfind(" ", 0, len(self._held) - 60) + 1 or len(self._held)
        if cut == 0:
            return ""
        ready, self._held = self._held[:cut], self._held[cut:]
        return self._release(ready)

    def finish(self) -> str:
        tail, self._held = self._held, ""
        return self._release(tail) if tail else ""


class _StreamShape:
    """Fills what some upstreams leave out, so every chunk is a valid OpenAI chunk."""

    def __init__(self, model: str) -> None:
        self._id: str | None = None
        self._created: int | None = None
        self._model = model
        self._roles_sent: set[int] = set()

    def fill(self, chunk: Chunk) -> Chunk:
        self._id = self._id or chunk.get("id") or f"chatcmpl-{uuid.uuid4().hex}"
        self._created = self._created or chunk.get("created") or int(time.time())
        chunk["id"] = chunk.get("id") or self._id
        chunk["object"] = "chat.completion.chunk"
        chunk["created"] = chunk.get("created") or self._created
        chunk["model"] = chunk.get("model") or self._model
        for choice in chunk.get("choices") or ():
            index = choice.setdefault("index", 0)
            delta = choice.setdefault("delta", {})
            choice.setdefault("finish_reason", None)
            if index not in self._roles_sent:
                delta.setdefault("role", "assistant")
                self._roles_sent.add(index)
        return chunk

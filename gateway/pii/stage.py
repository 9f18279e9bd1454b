"""The PII stage: between validation and routing on the way in, restore on the way out.

On the way in, every string the upstream will receive is scanned (``walk`` finds them by
protocol position: values, user-JSON keys and numbers, tool-call arguments), and so is the
decoded view of any string that carries JSON escapes (``escapes``). Depending on the
request's effective policy (``policy``) each finding becomes a placeholder (tokenize), a
bare type label (redact), or a refusal naming the types (block). A placeholder in a field
with a restricted alphabet takes the vault's alphabet-safe spelling.

Detection runs text by text (the detector itself scans long texts chunk by chunk), on a
worker thread when it is heavy, so one large request cannot starve the others; when the
request gives up (timeout, client gone) its cancel token stops the work. If detection
fails or runs out of time, the request fails with a 503 and goes nowhere. Values never
appear in logs, errors or notes; per-type counts and the policy digest do.

On the way out, ``response`` restores every string of the answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from gateway.config import PIIDetectionConfig
from gateway.errors import GatewayError, bad_request
from gateway.exchange import Exchange, PIIReport
from gateway.pii.coreference import propagate
from gateway.pii.detector import (
    CancelToken,
    DetectionCancelled,
    DetectionError,
    Finding,
    PIIDetector,
)
from gateway.pii.escapes import decode_escapes, token_span
from gateway.pii.findings import merge
from gateway.pii.introduced import IntroducedRedactor
from gateway.pii.policy import RoutePolicy
from gateway.pii.response import ResponseRestorer, StreamRestoration
from gateway.pii.vault import LITERAL, PLACEHOLDER, PlaceholderVault, safe_form
from gateway.pii.walk import Leaf, RequestWalk
from gateway.pipeline import Chunk

log = logging.getLogger("gateway.pii")


def detection_failed() -> GatewayError:
    return GatewayError(
        503,
        "PII detection failed, so the request was not forwarded. Retry; if it persists, the "
        "gateway operator should check the detector.",
        type="server_error",
        code="pii_detection_failed",
        headers={"Retry-After": "1"},
    )


@dataclass(frozen=True)
class _Job:
    """One detector call: a leaf's text, or its decoded view."""

    leaf: int
    shadow: bool
    text: str
    field: str | None


def _literals(text: str) -> list[Finding]:
    """Client text that already looks like a placeholder: vaulted, so it cannot be confused."""
    return [Finding(m.start(), m.end(), LITERAL, 0.0) for m in PLACEHOLDER.finditer(text)]


class PIIStage:
    name = "pii"

    def __init__(
        self,
        detector: PIIDetector,
        policies: Mapping[str, RoutePolicy],
        config: PIIDetectionConfig,
    ) -> None:
        self._detector = detector
        self._policies = dict(policies)
        self._config = config
        # Worker-thread detection a key may run at once: half the default executor's threads,
        # so one key sending huge texts leaves the other half to everyone else.
        self._per_key_workers = max(1, min(32, (os.cpu_count() or 1) + 4) // 2)
        self._key_workers: dict[str, asyncio.Semaphore] = {}

    @property
    def uses_ner(self) -> bool:
        return self._detector.uses_ner

    def policy(self, model: str) -> RoutePolicy:
        return self._policies[model]

    # -- request side -----------------------------------------------------------------------
    async def on_request(self, exchange: Exchange) -> None:
        policy = self._policies[exchange.model]
        report = exchange.pii = PIIReport(policy.digest, policy.mode)
        if policy.mode == "off":
            return
        if exchange.opaque_input is not None:
            # Token ids carry text no detector reads: they would pass unscanned (fail closed).
            raise bad_request(
                f"'{exchange.opaque_input}' as token ids cannot be checked for personal data, "
                f"and this route's PII policy is '{policy.mode}'. Send text instead.",
                param=exchange.opaque_input,
                code="pii_unscannable_input",
            )
        walk = RequestWalk.of(exchange.upstream_body)
        cancel = exchange.cancel
        started = time.perf_counter()
        try:
            findings = await asyncio.wait_for(
                self._detect(walk.leaves, cancel, exchange.key.sha256),
                timeout=self._config.timeout_s,
            )
        except (DetectionError, TimeoutError) as exc:
            cancel.cancel()
            log.error(
                "PII detection failed (%s); request %s refused",
                type(exc).__name__,
                exchange.request_id,
            )
            raise detection_failed() from None
        except BaseException:
            cancel.cancel()  # the request was given up (client gone): stop the work
            raise
        report.detect_ms = round((time.perf_counter() - started) * 1000, 3)
        relevant = [[f for f in found if f.entity_type in policy.entities] for found in findings]
        texts = [leaf.text for leaf in walk.leaves]
        relevant = propagate(texts, relevant)
        if policy.redact_introduced:
            exchange.pii_client_strings = tuple(texts)
        if policy.mode == "block":
            types = sorted({f.entity_type for found in relevant for f in found})
            if types:
                raise bad_request(
                    "This route does not accept personal data; the request contains: "
                    f"{', '.join(types)}. Remove it, or use a route that tokenizes it.",
                    param=exchange.text_param,
                    code="pii_blocked",
                )
            return
        vault = PlaceholderVault()
        for leaf, found in zip(walk.leaves, relevant, strict=True):
            replacement = self._replacement(leaf, found, vault, policy.mode)
            if replacement is not None:
                leaf.put(replacement)
        walk.finish()
        report.counts = vault.counts()
        if policy.mode == "tokenize":
            exchange.pii_vault = vault

    async def _detect(
        self, leaves: list[Leaf], cancel: CancelToken, scope: str
    ) -> list[list[Finding]]:
        """Findings per leaf, in the leaf's own coordinates."""
        jobs: list[_Job] = []
        shadows = [decode_escapes(leaf.text) for leaf in leaves]
        for index, leaf in enumerate(leaves):
            jobs.append(_Job(index, False, leaf.text, leaf.field))
            shadow = shadows[index]
            if shadow is not None:
                jobs.append(_Job(index, True, shadow.text, leaf.field))
        direct: list[list[Finding]] = [[] for _ in leaves]
        decoded: list[list[Finding]] = [[] for _ in leaves]
        for batch in self._batches(jobs):
            if cancel.cancelled:
                raise DetectionCancelled("the request was given up")
            results = await self._run(batch, cancel, scope)
            for job, found in zip(batch, results, strict=True):
                target = decoded if job.shadow else direct
                target[job.leaf] += found
        out: list[list[Finding]] = []
        for index, leaf in enumerate(leaves):
            found = direct[index]
            shadow = shadows[index]
            if shadow is not None:
                for f in merge(decoded[index]):
                    start, end = token_span(leaf.text, *shadow.original_span(f.start, f.end))
                    found.append(Finding(start, end, f.entity_type, f.score))
            out.append(merge(found))
        return out

    def _batches(self, jobs: list[_Job]) -> Iterable[list[_Job]]:
        """Jobs grouped so each worker-thread hop does a bounded amount of text."""
        batch: list[_Job] = []
        size = 0
        for job in jobs:
            if batch and size + len(job.text) > max(self._config.offload_chars, 1):
                yield batch
                batch, size = [], 0
            batch.append(job)
            size += len(job.text)
        if batch:
            yield batch

    async def _run(self, batch: list[_Job], cancel: CancelToken, scope: str) -> list[list[Finding]]:
        def work() -> list[list[Finding]]:
            return [
                self._detector.detect(j.text, field=j.field, cancel=cancel, scope=scope)
                for j in batch
            ]

        heavy = self._detector.uses_ner or sum(len(j.text) for j in batch) > (
            self._config.offload_chars
        )
        if heavy:
            workers = self._key_workers.setdefault(scope, asyncio.Semaphore(self._per_key_workers))
            async with workers:
                return await asyncio.to_thread(work)
        await asyncio.sleep(0)  # let other requests run between batches
        return work()

    @staticmethod
    def _replacement(
        leaf: Leaf, findings: list[Finding], vault: PlaceholderVault, mode: str
    ) -> str | None:
        """What the upstream gets instead of ``leaf``, or None to leave it as it is."""
        if leaf.number:
            if not findings:
                return None
            kind = findings[0].entity_type
            if mode == "tokenize":
                return vault.placeholder_for(kind, leaf.text, number=True)
            return f"<{kind}>"
        spans = merge([*findings, *_literals(leaf.text)])
        if not spans:
            return None
        text = leaf.text
        out: list[str] = []
        cursor = 0
        for span in spans:
            out.append(text[cursor : span.start])
            out.append(_mask(span, text[span.start : span.end], vault, mode, leaf.restricted))
            cursor = span.end
        out.append(text[cursor:])
        return "".join(out)

    # -- response side ----------------------------------------------------------------------
    def _redactor(self, exchange: Exchange) -> IntroducedRedactor | None:
        policy = self._policies[exchange.model]
        if not policy.redact_introduced or policy.mode == "off":
            return None
        strings = exchange.pii_client_strings
        return IntroducedRedactor(
            self._detector, policy.entities, strings, scope=exchange.key.sha256
        )

    async def on_completion(self, exchange: Exchange, completion: Chunk) -> Chunk:
        if exchange.operation == "embeddings":
            return completion  # vectors: no text comes back, nothing to restore or redact
        vault = exchange.pii_vault
        redactor = self._redactor(exchange)
        if vault is None and redactor is None:
            return completion
        restored = ResponseRestorer(vault or PlaceholderVault(), redactor).walk(completion)
        assert isinstance(restored, dict)
        return restored

    async def on_stream(
        self, exchange: Exchange, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]:
        vault = exchange.pii_vault
        redactor = self._redactor(exchange)
        if vault is None and redactor is None:
            async for chunk in chunks:
                yield chunk
            return
        restoration = StreamRestoration(vault or PlaceholderVault(), redactor)
        async for chunk in chunks:
            yield restoration.chunk(chunk)
        for index in restoration.open_choices():
            tail = restoration.tails(index)
            if tail:
                yield {"choices": [{"index": index, **tail, "finish_reason": None}]}


def _mask(span: Finding, value: str, vault: PlaceholderVault, mode: str, restricted: bool) -> str:
    if mode == "tokenize" or span.entity_type == LITERAL:
        placeholder = vault.placeholder_for(span.entity_type, value)
        return safe_form(placeholder) if restricted else placeholder
    return f"__pii_{span.entity_type}__" if restricted else f"<{span.entity_type}>"

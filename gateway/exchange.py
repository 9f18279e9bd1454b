"""The typed per-request exchange every stage and every endpoint shares.

``Exchange`` is one request on its way through the pipeline: created once the request is
validated, written by the stages (each owns its fields) and read by the response side
(signing, telemetry). What the response token will say besides the response hash is
``SigningFacts``, filled in from the first byte on, before the request is understood.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from gateway.config import APIKeyConfig
from gateway.pii.detector import CancelToken
from gateway.pii.vault import PlaceholderVault
from gateway.ratelimit import TokenCharge
from gateway.upstreams.base import Operation, Tenant
from gateway.upstreams.router import Routed


@dataclass
class SigningFacts:
    """What the response token will say, filled in as the request is understood."""

    request_id: str
    nonce: str | None = None
    request_sha256: str | None = None
    # A configured model name only; an unknown one is known here by its digest alone.
    model: str | None = None
    requested_model_sha256: str | None = None
    # The gateway's own id of the answer (the token's ``jti``): upstream ids may repeat.
    response_id: str | None = None
    owner: str | None = None  # the key's sha256: only that key reads the stored token


@dataclass
class PIIReport:
    """What the PII stage did, as the token and telemetry may say it: never values."""

    policy_digest: str
    mode: str
    counts: dict[str, int] = field(default_factory=dict)
    detect_ms: float | None = None

    def claim(self) -> dict[str, Any]:
        return {"policy_digest": self.policy_digest, "mode": self.mode, "counts": self.counts}


@dataclass(frozen=True)
class EngineFacts:
    """Where a local engine ran the request: its queue wait and the slots it used."""

    queue_ms: float
    slots: tuple[int, ...]

    @classmethod
    def of(cls, raw: Any) -> EngineFacts | None:
        if not isinstance(raw, dict):
            return None
        queue = raw.get("queue_ms", 0)
        slots = raw.get("slots") or ()
        return cls(
            float(queue) if isinstance(queue, int | float) else 0.0,
            tuple(s for s in slots if isinstance(s, int)) if isinstance(slots, list) else (),
        )


@dataclass
class Exchange:
    """One request on its way through the pipeline.

    ``body_bytes`` are the exact bytes received; the endpoint validated them once and built
    ``upstream_body``, what the router will send, which is the only thing request stages
    change. ``text_param`` names the parameter holding the client's text (for errors).
    ``opaque_input`` names a parameter whose content no detector can read (token ids).
    """

    request_id: str
    operation: Operation
    key: APIKeyConfig
    model: str
    body_bytes: bytes
    upstream_body: dict[str, Any]
    streaming: bool = False
    client_wants_usage: bool = False
    text_param: str = "messages"
    opaque_input: str | None = None
    tenant: Tenant | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    # Tokens held against the key's per-minute limit until the usage is known.
    tokens_reserved: TokenCharge | None = None
    routed: Routed | None = None
    # Written by the PII stage.
    pii: PIIReport | None = None
    pii_vault: PlaceholderVault | None = None
    pii_client_strings: tuple[str, ...] = ()
    # Written by usage accounting.
    usage: dict[str, Any] | None = None
    engine: EngineFacts | None = None
    finish_reasons: list[str] = field(default_factory=list)


@dataclass
class RequestRecord:
    """The lifecycle's own view of one request, from its first byte to its finish: the
    signing facts, the exchange once there is one, and what telemetry counts at the end."""

    endpoint: str
    facts: SigningFacts
    started: float
    key: APIKeyConfig | None = None
    exchange: Exchange | None = None
    first_token_at: float | None = None
    in_flight: bool = False
    finished: bool = False
    span: Span | None = None

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

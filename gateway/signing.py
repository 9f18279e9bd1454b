"""Response signing: the token over exactly the bytes a client receives.

``ResponseSigner.json`` serialises a payload once, hashes those bytes and puts the token in
the ``x-attestation-token`` header. ``ResponseSigner.stream`` wraps an endpoint's byte
stream: every byte sent before the token is hashed, a failure mid-way becomes the endpoint's
in-band error event (never a silent cut), and the endpoint's carrier delivers the token at
the end (a usage chunk, or an SSE comment). A failed answer's token says so: its status and
error code, never a 200.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from starlette.responses import Response

from gateway.attestation.service import AttestationService, sha256_hex
from gateway.attestation.token import ResponseFacts
from gateway.errors import GatewayError
from gateway.exchange import RequestRecord
from gateway.sse import json_bytes
from gateway.telemetry import tracer

log = logging.getLogger("gateway.signing")

TOKEN_HEADER = "x-attestation-token"


class StreamBody(Protocol):
    """An endpoint's stream, as the signer drives it."""

    def events(self) -> AsyncIterator[bytes]:
        """The events to send, each a complete SSE event (all of them hashed)."""
        ...

    def failure(self, error: GatewayError) -> bytes:
        """The in-band event that ends a stream which failed after it started."""
        ...

    def trailer(self, token: str, failed: bool) -> bytes:
        """The token's carrier and the stream's end (``[DONE]`` only if it did not fail)."""
        ...


class ResponseSigner:
    def __init__(self, attestation: AttestationService) -> None:
        self._attestation = attestation

    def sign(
        self,
        record: RequestRecord,
        status: int,
        response_sha256: str,
        error_code: str | None = None,
    ) -> str:
        with tracer.start_as_current_span("sign"):
            return self._attestation.sign(
                self._facts(record, status, response_sha256, error_code), owner=record.facts.owner
            )

    @staticmethod
    def _facts(
        record: RequestRecord, status: int, response_sha256: str, error_code: str | None
    ) -> ResponseFacts:
        """The token's claims besides the evidence's.

        ``model`` is ``{name, group, weights_sha256}`` (the plaintext GGUF's SHA-256, null
        when the answer came from no engine of ours), plus ``sealed: {sha256, key_id,
        key_broker}`` for weights sealed at rest; for plain weights ``sealed`` is absent.
        """
        facts = record.facts
        exchange = record.exchange
        routed = exchange.routed if exchange else None
        model: dict[str, Any] | None = None
        if facts.model is not None:
            weights = routed.weights if routed else None
            model = {
                "name": facts.model,
                "group": routed.model_group if routed else None,
                "weights_sha256": None,
                **(weights.claim() if weights else {}),
            }
        elif facts.requested_model_sha256 is not None:
            model = {"name": None, "requested_sha256": facts.requested_model_sha256}
        return ResponseFacts(
            jti=facts.response_id or facts.request_id,
            request_sha256=facts.request_sha256,
            response_sha256=response_sha256,
            status=status,
            nonce=facts.nonce,
            model=model,
            pii=exchange.pii.claim() if exchange and exchange.pii else None,
            upstream=routed.claim() if routed else None,
            extra={"error": {"code": error_code}} if error_code else {},
        )

    def json(
        self,
        record: RequestRecord,
        payload: dict[str, Any],
        *,
        status: int = 200,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = json_bytes(payload)
        token = self.sign(record, status, sha256_hex(body), error_code)
        return Response(
            body,
            status_code=status,
            media_type="application/json",
            headers={**(headers or {}), TOKEN_HEADER: token},
        )

    def error(self, record: RequestRecord, error: GatewayError) -> Response:
        return self.json(
            record, error.body(), status=error.status, error_code=error.code, headers=error.headers
        )

    async def stream(
        self,
        record: RequestRecord,
        body: StreamBody,
        *,
        to_error: Callable[[Exception], GatewayError],
        finished: Callable[[int, str | None], None],
    ) -> AsyncIterator[bytes]:
        """``body``'s events, hashed; then its carrier with the token over all of them.

        ``finished`` is told the stream's status once the token is made (before the carrier
        is sent: a client that leaves now has had its whole answer).
        """
        digest = hashlib.sha256()
        failure: GatewayError | None = None
        try:
            async for event in body.events():
                digest.update(event)
                yield event
        except Exception as exc:  # every failure ends the stream in-band
            failure = to_error(exc)
            event = body.failure(failure)
            digest.update(event)
            yield event
        status = failure.status if failure else 200
        code = failure.code if failure else None
        token = self.sign(record, status, digest.hexdigest(), code)
        finished(status, code)
        yield body.trailer(token, failure is not None)

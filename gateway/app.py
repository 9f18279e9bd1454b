"""The gateway's HTTP surface: the route table.

Every OpenAI endpoint runs the one request lifecycle (``gateway.lifecycle``): an endpoint is a
module in ``gateway.endpoints`` and a line here. The other routes (models, health, evidence,
keys, stored tokens, metrics) are small enough to live beside the table.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import logging
import re
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confidential_common.tee.providers import AttestationUnavailable
from gateway.attestation.service import NONCE_HEX, AttestationService
from gateway.auth import APIKeyStore
from gateway.endpoints.chat import ChatEndpoint
from gateway.errors import GatewayError, bad_request
from gateway.lifecycle import Endpoint, RequestLifecycle
from gateway.openapi import openapi_document
from gateway.pipeline import Pipeline
from gateway.request_id import RequestIdMiddleware
from gateway.shared_state.base import FailureGuard, Limiter
from gateway.shared_state.memory import MemoryAuthFailureGuard
from gateway.signing import ResponseSigner
from gateway.telemetry import GatewayMetrics
from gateway.upstreams.router import Router

log = logging.getLogger("gateway.app")

# The OpenAI endpoints: path, and the module and class that serve it through the lifecycle.
# Chat is what nearly every request is; the others are imported on their first request (or
# for /openapi.json), which keeps the start-up and the memory of a chat-only gateway down.
ENDPOINT_CLASSES: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("gateway.endpoints.chat", "ChatEndpoint"),
    "/v1/completions": ("gateway.endpoints.completions.serving", "CompletionsEndpoint"),
    "/v1/embeddings": ("gateway.endpoints.embeddings.serving", "EmbeddingsEndpoint"),
    "/v1/responses": ("gateway.endpoints.responses.serving", "ResponsesEndpoint"),
}
ENDPOINTS = tuple(ENDPOINT_CLASSES)
_loaded: dict[str, Endpoint[Any]] = {"/v1/chat/completions": ChatEndpoint()}


def endpoint(path: str) -> Endpoint[Any]:
    """The endpoint serving ``path`` (one of ``ENDPOINTS``), imported on first use."""
    found = _loaded.get(path)
    if found is None:
        module, name = ENDPOINT_CLASSES[path]
        found = _loaded[path] = getattr(importlib.import_module(module), name)()
    return found


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class GatewayApp:
    def __init__(
        self,
        *,
        keys: APIKeyStore,
        limiter: Limiter,
        router: Router,
        pipeline: Pipeline,
        max_body_bytes: int,
        version: str,
        attestation: AttestationService,
        metrics: GatewayMetrics,
        metrics_key_sha256: str | None = None,
        body_timeout_s: float = 30.0,
        auth_guard: FailureGuard | None = None,
    ) -> None:
        self._auth_guard = auth_guard or MemoryAuthFailureGuard()
        self._attestation = attestation
        self._metrics = metrics
        self._metrics_key = bytes.fromhex(metrics_key_sha256) if metrics_key_sha256 else None
        self._router = router
        self._version = version
        self._openapi: dict[str, Any] | None = None  # built on its first request
        self._lifecycle = RequestLifecycle(
            keys=keys,
            limiter=limiter,
            router=router,
            pipeline=pipeline,
            signer=ResponseSigner(attestation),
            metrics=metrics,
            auth_guard=self._auth_guard,
            attestation=attestation,
            max_body_bytes=max_body_bytes,
            body_timeout_s=body_timeout_s,
        )

    def _endpoint_route(self, path: str) -> Route:
        async def serve(request: Request) -> Response:
            return await self._lifecycle.handle(request, endpoint(path))

        return Route(path, serve, methods=["POST"])

    def build(self, lifespan: Any = None) -> Starlette:
        return Starlette(
            routes=[
                *(self._endpoint_route(path) for path in ENDPOINTS),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/ready", self.ready, methods=["GET"]),
                Route("/openapi.json", self.openapi, methods=["GET"]),
                Route("/v1/attestation", self.attestation_evidence, methods=["GET"]),
                Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
                Route("/v1/attestations/{completion_id}", self.stored_token, methods=["GET"]),
                Route("/metrics", self.prometheus, methods=["GET"]),
            ],
            middleware=[Middleware(RequestIdMiddleware)],
            exception_handlers={
                GatewayError: _gateway_error,
                HTTPException: _http_exception,
                Exception: _unexpected,
            },
            lifespan=lifespan,
        )

    async def models(self, request: Request) -> Response:
        key = await self._lifecycle.authenticate(request)
        data = [_model_object(name) for name in self._router.groups if key.allows(name)]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        """``GET /v1/models/{id}`` (openai ``models.retrieve``)."""
        key = await self._lifecycle.authenticate(request)
        name = request.path_params["model_id"]
        if name not in self._router.groups or not key.allows(name):
            raise GatewayError(
                404,
                "The model you requested does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(_model_object(name))

    async def health(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """Overall readiness for anyone (load balancers); the per-model view only for a key,
        and only of the models that key may use: model names are not for everyone."""
        models = self._router.ready()
        ready = all(models.values())
        document: dict[str, Any] = {"ready": ready}
        if request.headers.get("authorization"):
            key = await self._lifecycle.authenticate(request)
            document["models"] = {name: up for name, up in models.items() if key.allows(name)}
        return JSONResponse(document, status_code=200 if ready else 503)

    async def openapi(self, _: Request) -> Response:
        if self._openapi is None:
            self._openapi = openapi_document(self._version, {p: endpoint(p) for p in ENDPOINTS})
        return JSONResponse(self._openapi)

    async def attestation_evidence(self, request: Request) -> Response:
        nonce = request.query_params.get("nonce")
        if nonce is not None and not NONCE_HEX.match(nonce):
            return error_response(
                bad_request(
                    "nonce must be 8 to 64 bytes written as 16 to 128 hexadecimal characters.",
                    param="nonce",
                    code="invalid_value",
                )
            )
        try:
            document = await asyncio.to_thread(self._attestation.evidence_document, nonce)
        except AttestationUnavailable as exc:
            log.error("attestation evidence unavailable: %s", exc)
            return error_response(
                GatewayError(
                    503,
                    "Attestation evidence is unavailable right now; the TEE interface failed.",
                    type="server_error",
                    code="attestation_unavailable",
                    headers={"Retry-After": "5"},
                )
            )
        return JSONResponse(document)

    async def prometheus(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        await self._auth_guard.check(client)  # guessing the metrics key is guessing a key
        presented = request.headers.get("authorization", "").partition(" ")[2].strip()
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        if self._metrics_key is None or not hmac.compare_digest(digest, self._metrics_key):
            if self._metrics_key is not None:
                await self._auth_guard.failed(client)
            return error_response(
                GatewayError(
                    401 if self._metrics_key else 404,
                    "Metrics need the metrics key." if self._metrics_key else "Unknown route.",
                    code="invalid_api_key" if self._metrics_key else None,
                )
            )
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def jwks(self, _: Request) -> Response:
        return JSONResponse(self._attestation.jwks())

    async def stored_token(self, request: Request) -> Response:
        """Only the key whose request caused a token reads it back (others: a plain 404)."""
        key = await self._lifecycle.authenticate(request)
        completion_id = request.path_params["completion_id"]
        token = await self._attestation.stored(completion_id, key.sha256)
        if token is None:
            return error_response(
                GatewayError(
                    404,
                    "No token is kept for that completion id (unknown, or older than the "
                    "retention window).",
                    code="token_not_found",
                )
            )
        return JSONResponse({"id": completion_id, "attestation_token": token})


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "confidential-gateway"}


# Paths named back in a 404: plain route shapes only (a path could hold a client's value).
_ROUTE_SHAPE = re.compile(r"^(?:/(?:[A-Za-z_.-]{1,40}|v[0-9]{1,2})){1,8}/?$")


async def _gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        path = request.url.path
        named = f" '{path}'" if _ROUTE_SHAPE.match(path) else ""
        message = (
            f"Unknown route{named}. This gateway serves "
            + ", ".join(ENDPOINTS)
            + ", /v1/models, /v1/models/{model} and /v1/attestation."
        )
    elif exc.status_code == 405:
        message = "Method not allowed for this route."
    else:
        message = str(exc.detail)
    return error_response(GatewayError(exc.status_code, message, code=None))


async def _unexpected(_: Request, exc: Exception) -> Response:
    # The type only: an exception's text may quote request content.
    log.error("unhandled %s", type(exc).__name__)
    return error_response(
        GatewayError(500, "The gateway hit an internal error.", type="server_error")
    )

"""External providers through litellm, as one more implementation of the upstream interface.

Only requests whose PII was tokenized (or a route that explicitly allows raw PII) reach this
code, so a provider only ever sees placeholders. litellm is imported when the first such
route is built, never for a local-only gateway, and kept offline-safe: the bundled model cost
map, no telemetry, no callbacks that could ship request data anywhere, no silent parameter
dropping, no retries of its own (the router decides about retries and fallbacks).

Streams are turned back into clean OpenAI chunks, and provider errors into ``UpstreamError``
with the status a client should see: the provider refusing the gateway's own credentials or
model name is the operator's problem (502), not the client's.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from gateway.config import LiteLLMDeployment, ModelConfig
from gateway.upstreams.base import Operation, Tenant, UpstreamDescription, UpstreamError
from gateway.upstreams.router import Member

if TYPE_CHECKING:
    from gateway.upstreams.topology import BuildContext, BuiltMember

_DELTA_KEYS = ("role", "content", "tool_calls", "refusal")
_MESSAGE_KEYS = ("role", "content", "tool_calls", "refusal")
_litellm: Any = None


def import_litellm() -> Any:
    """Import litellm once, configured so that it never talks to anything but the provider."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_TELEMETRY_DISABLED", "true")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        litellm.telemetry = False
        litellm.callbacks = []
        litellm.success_callback = []
        litellm.failure_callback = []
        litellm._async_success_callback = []
        litellm._async_failure_callback = []
        litellm.input_callback = []
        litellm.turn_off_message_logging = True
        litellm.suppress_debug_info = True
        litellm.drop_params = False
        _litellm = litellm
    return _litellm


def provider_of(model: str) -> str:
    return model.split("/", 1)[0]


def _clean_delta(delta: dict[str, Any]) -> dict[str, Any]:
    return {k: delta[k] for k in _DELTA_KEYS if delta.get(k) is not None}


class _ChunkShaper:
    """Consistent id/created/model over a stream, and only OpenAI's fields in each chunk."""

    def __init__(self, model: str) -> None:
        self._id = f"chatcmpl-{uuid.uuid4().hex}"
        self._created = int(time.time())
        self._model = model

    def shape(self, raw: dict[str, Any]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [
                {
                    "index": choice.get("index", 0),
                    "delta": _clean_delta(choice.get("delta") or {}),
                    "logprobs": None,
                    "finish_reason": choice.get("finish_reason"),
                }
                for choice in raw.get("choices") or ()
            ],
        }
        if raw.get("usage"):
            chunk["usage"] = _usage(raw["usage"])
        return chunk


def _usage(raw: dict[str, Any]) -> dict[str, Any]:
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(raw.get("total_tokens") or prompt + completion),
    }


def _completion(raw: dict[str, Any], model: str) -> dict[str, Any]:
    choices = []
    for choice in raw.get("choices") or ():
        message = choice.get("message") or {}
        clean = {k: message.get(k) for k in _MESSAGE_KEYS if k in message}
        clean.setdefault("role", "assistant")
        clean.setdefault("content", None)
        choices.append(
            {
                "index": choice.get("index", 0),
                "message": clean,
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    result: dict[str, Any] = {
        "id": raw.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": raw.get("created") or int(time.time()),
        "model": model,
        "choices": choices,
    }
    if raw.get("usage"):
        result["usage"] = _usage(raw["usage"])
    return result


class LiteLLMUpstream:
    def __init__(
        self,
        name: str,
        *,
        model: str,
        served_model: str,
        api_base: str | None,
        api_key: str | None,
        timeout_s: float,
        params: dict[str, Any],
    ) -> None:
        self.name = name
        self.model = model
        self.provider = provider_of(model)
        self._served_model = served_model
        self._api_base = api_base
        self._api_key = api_key
        self._timeout = timeout_s
        self._params = params
        self._litellm = import_litellm()

    def _kwargs(self, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        kwargs = {k: v for k, v in body.items() if k not in {"model", "stream"}}
        kwargs.update(self._params)
        kwargs.update(model=self.model, stream=stream, timeout=self._timeout, num_retries=0)
        if self._api_base:
            kwargs["api_base"] = self._api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        return kwargs

    def _error(self, exc: Exception) -> UpstreamError:
        status = getattr(exc, "status_code", None)
        kind = type(exc).__name__
        if kind in {"Timeout", "APITimeoutError"} or status == 408:
            return UpstreamError(f"{self.name}: timed out", retryable=False, timed_out=True)
        if (
            kind
            in {
                "APIConnectionError",
                "ServiceUnavailableError",
                "InternalServerError",
                "RateLimitError",
                "BadGatewayError",
            }
            or (status or 0) >= 500
            or status == 429
        ):
            return UpstreamError(
                f"{self.name}: provider unavailable ({kind})",
                retryable=True,
                status=status if status in {429, 503} else None,
            )
        if status in {401, 403, 404} or kind in {
            "AuthenticationError",
            "PermissionDeniedError",
            "NotFoundError",
        }:
            # The gateway's credentials or model name: the operator's to fix, not the client's.
            return UpstreamError(
                f"{self.name}: provider refused the gateway ({kind})", retryable=True
            )
        if status in {400, 422} or kind in {
            "BadRequestError",
            "UnsupportedParamsError",
            "ContextWindowExceededError",
            "UnprocessableEntityError",
        }:
            message = str(getattr(exc, "message", "") or "").split("\n")[0][:500]
            return UpstreamError(
                f"{self.name}: provider rejected the request",
                retryable=False,
                status=400,
                body={
                    "error": {
                        "message": f"The provider rejected the request: {message}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "provider_rejected",
                    }
                },
            )
        return UpstreamError(f"{self.name}: provider call failed ({kind})", retryable=True)

    def _call(self, operation: Operation) -> Any:
        """litellm's function for an operation: its chat, text-completion or embedding API."""
        if operation == "embeddings":
            return self._litellm.aembedding
        if operation == "completions":
            return self._litellm.atext_completion
        return self._litellm.acompletion

    async def complete(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> dict[str, Any]:
        kwargs = self._kwargs(body, stream=False)
        if operation == "embeddings":
            kwargs.pop("stream", None)
        try:
            response = await self._call(operation)(**kwargs)
        except Exception as exc:  # litellm raises its own hierarchy; map every one of them
            raise self._error(exc) from None
        raw = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        if operation == "chat/completions":
            return _completion(raw, self._served_model)
        raw["model"] = self._served_model
        return raw

    @asynccontextmanager
    async def stream(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        if operation != "chat/completions":
            # litellm's text-completion streams come back in chat shape: not passed off as
            # legacy chunks. Such a route serves /v1/completions without streaming.
            raise UpstreamError(
                f"{self.name}: no {operation} stream",
                retryable=False,
                status=400,
                body={
                    "error": {
                        "message": "This model does not stream /v1/completions; send the "
                        "request without stream.",
                        "type": "invalid_request_error",
                        "param": "stream",
                        "code": "unsupported_parameter",
                    }
                },
            )
        try:
            wrapper = await self._litellm.acompletion(**self._kwargs(body, stream=True))
        except Exception as exc:
            raise self._error(exc) from None
        try:
            yield self._events(wrapper)
        finally:
            close = getattr(wrapper, "aclose", None)
            if close is not None:
                # Closing a half-read provider stream must not mask the real error.
                with contextlib.suppress(Exception):
                    await close()

    async def _events(self, wrapper: Any) -> AsyncIterator[dict[str, Any]]:
        shaper = _ChunkShaper(self._served_model)
        try:
            async for chunk in wrapper:
                yield shaper.shape(chunk.model_dump())
        except UpstreamError:
            raise
        except Exception as exc:
            error = self._error(exc)
            raise UpstreamError(str(error), retryable=False) from None

    async def probe(self) -> bool:
        # Probing a paid provider costs money; a cooled-down provider is simply tried again.
        return True

    async def close(self) -> None:
        return None


def build(
    context: BuildContext, model: ModelConfig, index: int, deployment: LiteLLMDeployment
) -> list[BuiltMember]:
    """An external provider: outside this guest, so it only ever sees tokenized prompts."""
    from gateway.upstreams.topology import BuiltMember, secret_from_env

    provider = provider_of(deployment.model)
    upstream = LiteLLMUpstream(
        f"{model.name}/{provider}-{index}",
        model=deployment.model,
        served_model=model.name,
        api_base=deployment.api_base,
        api_key=secret_from_env(
            deployment.api_key_env, f"models[{model.name}].deployments[{index}]"
        ),
        timeout_s=deployment.timeout_s,
        params=dict(deployment.params),
    )
    description = UpstreamDescription("litellm", in_guest=False, attested=False, provider=provider)
    where = f" at {deployment.api_base}" if deployment.api_base else ""
    return [
        BuiltMember(
            Member(upstream, description),
            lambda: (
                f"external provider via litellm: {deployment.model}{where} "
                "(outside this guest; receives tokenized prompts)"
            ),
        )
    ]

"""OpenAI's wire format over HTTP: local engines (Unix socket), remote engines and
OpenAI-compatible providers (TLS) are all ``OpenAIUpstream`` with a different transport.

Each operation posts to ``{base_url}/{operation}``; streams are SSE until ``[DONE]``.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from gateway.upstreams.base import Operation, Tenant, UpstreamError
from gateway.upstreams.sse_reader import SSEFormatError, SSEReader


def _error_body(response: httpx.Response, raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body
    return None


class OpenAIUpstream:
    """OpenAI operations against ``base_url`` (ending before ``/chat/completions``)."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        model: str,
        transport: httpx.AsyncBaseTransport | None = None,
        api_key: str | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 5.0,
        probe_path: str = "/models",
        max_connections: int = 1024,
        forward_tenant: bool = False,
    ) -> None:
        self.name = name
        self.model = model
        # Only our own engines hear who a request is for; a provider never does.
        self._forward_tenant = forward_tenant
        self._probe_path = probe_path
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            verify=verify,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            # Streams each hold a connection (HTTP/1.1); finished ones stay pooled for the next.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    def _headers(self, request_id: str, tenant: Tenant | None) -> dict[str, str]:
        headers = {"x-request-id": request_id}
        if self._forward_tenant and tenant is not None:
            headers |= tenant.headers()
        return headers

    async def complete(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self._client.post(
                f"/{operation}", json=body, headers=self._headers(request_id, tenant)
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code != 200:
            raise self._status_error(response, response.content)
        try:
            result = response.json()
        except ValueError as exc:
            raise UpstreamError(
                f"{self.name}: answered with invalid JSON", retryable=False
            ) from exc
        if not isinstance(result, dict):
            raise UpstreamError(f"{self.name}: answered with a non-object", retryable=False)
        return self._scoped(result)

    def _scoped(self, answer: dict[str, Any]) -> dict[str, Any]:
        """An upstream that does not scope its prompt cache per tenant keeps one cache for
        every key of this gateway: its cached-token count would tell one key what another
        sent, so it never reaches a client."""
        if not self._forward_tenant:
            usage = answer.get("usage")
            details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
            if isinstance(details, dict):
                details.pop("cached_tokens", None)
        return answer

    @asynccontextmanager
    async def stream(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        request = self._client.build_request(
            "POST", f"/{operation}", json=body, headers=self._headers(request_id, tenant)
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        try:
            if response.status_code != 200:
                raise self._status_error(response, await response.aread())
            yield self._events(response)
        finally:
            await response.aclose()

    async def _events(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        reader = SSEReader()
        try:
            async for data in response.aiter_bytes():
                try:
                    events = reader.feed(data)
                except SSEFormatError as exc:
                    raise UpstreamError(f"{self.name}: sent {exc}", retryable=False) from exc
                for event in events:
                    if not isinstance(event, dict):
                        raise UpstreamError(
                            f"{self.name}: sent a non-object event", retryable=False
                        )
                    if "error" in event and "choices" not in event:
                        raise UpstreamError(
                            f"{self.name}: failed mid-stream", retryable=False, body=event
                        )
                    yield self._scoped(event)
                if reader.done:
                    return
        except httpx.TimeoutException as exc:
            raise UpstreamError(
                f"{self.name}: timed out mid-stream", retryable=False, timed_out=True
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamError(
                f"{self.name}: connection lost mid-stream", retryable=False
            ) from exc
        except httpx.DecodingError as exc:
            raise UpstreamError(
                f"{self.name}: sent a stream it could not decode", retryable=False
            ) from exc
        raise UpstreamError(f"{self.name}: stream ended without [DONE]", retryable=False)

    def _unreachable(self, exc: httpx.TransportError) -> UpstreamError:
        """Before any response: a timeout is final, a refused or reset connection may retry."""
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamError(f"{self.name}: timed out", retryable=False, timed_out=True)
        return UpstreamError(f"{self.name}: unreachable ({type(exc).__name__})", retryable=True)

    def _status_error(self, response: httpx.Response, raw: bytes) -> UpstreamError:
        status = response.status_code
        body = _error_body(response, raw)
        # 5xx before any output (overloaded, restarting): another upstream may serve it.
        return UpstreamError(
            f"{self.name}: answered HTTP {status}",
            retryable=status >= 500 or status in {408, 429},
            status=status,
            body=body,
        )

    async def probe(self) -> bool:
        """True when the upstream answers its health route."""
        try:
            response = await self._client.get(self._probe_path, timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def close(self) -> None:
        await self._client.aclose()

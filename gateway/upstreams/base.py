"""The one upstream interface: a chat completion sent to something that speaks OpenAI's API.

Local engines (a Unix socket), remote engines and OpenAI-compatible providers (TLS) are all
``OpenAIUpstream`` with a different transport; the router never asks which it holds.

Boundary, in the style of httpx transports: ``complete`` takes the request JSON and returns
the response JSON. ``stream`` is an async context manager that yields parsed chunk objects
until the upstream's ``[DONE]``; leaving the context closes the upstream response, which is
how a client disconnect reaches the engine and frees its slot. Failures raise
``UpstreamError``; ``retryable`` is true when the upstream never produced a response, so
another upstream may safely be tried.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx


@dataclass(frozen=True)
class Tenant:
    """Who a request is for, as a local engine schedules and caches it.

    ``id`` is an opaque per-key id (never the key or its name); engines schedule fairly
    across ids by ``weight`` and reuse cached prompt prefixes only within one id.
    """

    id: str
    weight: int = 1

    def headers(self) -> dict[str, str]:
        return {TENANT_HEADER: self.id, TENANT_WEIGHT_HEADER: str(self.weight)}


TENANT_HEADER = "x-gateway-tenant"
TENANT_WEIGHT_HEADER = "x-gateway-tenant-weight"


class Upstream(Protocol):
    """What the router holds. ``model`` is the id this upstream expects in requests.

    ``tenant`` is for upstreams that schedule per key (local engines); others ignore it.
    """

    name: str
    model: str

    async def complete(
        self, body: dict[str, Any], *, request_id: str, tenant: Tenant | None = None
    ) -> dict[str, Any]: ...

    def stream(
        self, body: dict[str, Any], *, request_id: str, tenant: Tenant | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]: ...

    async def probe(self) -> bool: ...

    async def close(self) -> None: ...


class UpstreamError(Exception):
    """An upstream failed. ``status`` and ``body`` are set when it answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        body: dict[str, Any] | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.retryable = retryable
        self.status = status
        self.body = body

    @property
    def health_signal(self) -> bool:
        """The failure says something about the upstream, not about this request.

        Unreachable, reset or cut: yes. An answer, even a 5xx, means the upstream
        is alive: overload (429/503) moves work elsewhere and an error one request provoked
        (500) is that request's; neither may take the upstream out for everyone else. 502
        and 504 are its own upstream failing, so they count.
        """
        if self.status is None:
            # A request that ran past its timeout may just be long: hung engines are the
            # watchdog's and the prober's to find, or one key could eject an upstream.
            return not self.timed_out
        return self.status in {502, 504}

    @property
    def client_error(self) -> bool:
        """The upstream rejected the request itself (4xx other than 408/429)."""
        return (
            self.status is not None and 400 <= self.status < 500 and self.status not in {408, 429}
        )


def _error_body(response: httpx.Response, raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body
    return None


class OpenAIUpstream:
    """Chat completions against ``base_url`` (ending before ``/chat/completions``)."""

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
        max_connections: int = 256,
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
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
        )

    def _headers(self, request_id: str, tenant: Tenant | None) -> dict[str, str]:
        headers = {"x-request-id": request_id}
        if self._forward_tenant and tenant is not None:
            headers |= tenant.headers()
        return headers

    async def complete(
        self, body: dict[str, Any], *, request_id: str, tenant: Tenant | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._client.post(
                "/chat/completions", json=body, headers=self._headers(request_id, tenant)
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
        self, body: dict[str, Any], *, request_id: str, tenant: Tenant | None = None
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        request = self._client.build_request(
            "POST", "/chat/completions", json=body, headers=self._headers(request_id, tenant)
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
        try:
            async for line in response.aiter_lines():
                if not line or line.startswith(":"):
                    continue
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise UpstreamError(
                        f"{self.name}: sent an invalid stream event", retryable=False
                    ) from exc
                if isinstance(event, dict) and "error" in event and "choices" not in event:
                    raise UpstreamError(
                        f"{self.name}: failed mid-stream", retryable=False, body=event
                    )
                if not isinstance(event, dict):
                    raise UpstreamError(f"{self.name}: sent a non-object event", retryable=False)
                yield self._scoped(event)
        except httpx.TimeoutException as exc:
            raise UpstreamError(
                f"{self.name}: timed out mid-stream", retryable=False, timed_out=True
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamError(
                f"{self.name}: connection lost mid-stream", retryable=False
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

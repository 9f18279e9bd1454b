"""Confidential Containers' in-guest resource endpoint (the Confidential Data Hub).

In a CoCo pod the guest components attest to the KBS themselves; the pod reads the released
resource in plain from ``http://127.0.0.1:8006/cdh/resource/<repository>/<type>/<tag>``
(guest-components' api-server-rest). The endpoint is only reachable inside the guest, so the
URL must be loopback.
"""

from __future__ import annotations

import httpx

from confidential_common.key_broker.base import (
    KeyReleaseError,
    broker_url,
    quoted_detail,
    read_capped,
    resource_path,
)

DEFAULT_CDH_URL = "http://127.0.0.1:8006"
_MAX_KEY_RESOURCE = 64 << 10


class CdhKeyBroker:
    kind = "cdh"

    def __init__(
        self,
        resource: str,
        *,
        url: str = DEFAULT_CDH_URL,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = broker_url(url, loopback_only=True)
        self._resource = resource_path(resource)
        self._timeout = timeout_s
        self._transport = transport

    def describe(self) -> str:
        return f"Confidential Data Hub {self._url}, resource {self._resource}"

    def fetch(self) -> bytes:
        where = f"{self._url}/cdh/resource/{self._resource}"
        try:
            with (
                httpx.Client(timeout=self._timeout, transport=self._transport) as client,
                client.stream("GET", where) as response,
            ):
                body = read_capped(response, _MAX_KEY_RESOURCE)
                status = response.status_code
        except httpx.HTTPError as exc:
            raise KeyReleaseError(
                f"cannot reach the Confidential Data Hub at {self._url} ({type(exc).__name__}): "
                "is this a Confidential Containers pod with the guest components running?"
            ) from None
        if body is None:
            raise KeyReleaseError(f"the resource {self._resource} is too large to be a model key")
        if status != 200:
            text = body.decode("utf-8", errors="replace")
            raise KeyReleaseError(
                f"the Confidential Data Hub did not release {self._resource}: HTTP "
                f"{status} {quoted_detail(text)}"
            )
        return body

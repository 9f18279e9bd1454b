"""A client of Confidential Containers' Trustee KBS: the RCAR protocol, then one resource.

Read from Trustee's ``kbs/docs/kbs_attestation_protocol.md`` (protocol version 0.4.0):

1. ``POST /kbs/v0/auth`` with ``{"version", "tee", "extra-params"}``: the KBS answers a
   challenge ``{"nonce", "extra-params"}`` and a ``kbs-session-id`` cookie.
2. A fresh ephemeral P-256 key is made for this session only. ``POST /kbs/v0/attest`` with
   ``{"runtime-data": {"nonce", "tee-pubkey"}, "tee-evidence": {"primary_evidence",
   "additional_evidence"}}``; the evidence's report data is SHA-384 of the canonical runtime
   data (see kbs_evidence), so the nonce and the key are bound by the hardware. The KBS
   answers an attestation token.
3. ``GET /kbs/v0/resource/<repository>/<type>/<tag>`` with the cookie: the resource comes
   as a flattened JWE (``ECDH-ES+A256KW``, ``A256GCM``) to the ephemeral key, which never
   leaves this process and is dropped afterwards.

HTTPS authenticates the KBS (``ca_file`` pins its CA); the JWE keeps the key confidential even
from whatever terminates that TLS. Plain http is accepted only to a loopback host (tests).
"""

from __future__ import annotations

import json as jsonlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from jwcrypto import jwe, jwk
from jwcrypto.common import JWException

from confidential_common.key_broker.base import (
    KeyReleaseError,
    broker_url,
    quoted_detail,
    read_capped,
    resource_path,
)
from confidential_common.key_broker.kbs_evidence import kbs_evidence, kbs_tee, runtime_data_digest
from confidential_common.tee.providers import EvidenceProvider

log = logging.getLogger("key_broker")
PROTOCOL_VERSION = "0.4.0"
SESSION_COOKIE = "kbs-session-id"
KEY_ALG = "ECDH-ES+A256KW"
CONTENT_ENC = "A256GCM"
_MAX_RESPONSE = 1 << 20


class KbsKeyBroker:
    kind = "kbs"

    def __init__(
        self,
        url: str,
        resource: str,
        *,
        provider: EvidenceProvider,
        ca_file: Path | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = broker_url(url)
        self._resource = resource_path(resource)
        self._provider = provider
        self._ca_file = ca_file
        self._timeout = timeout_s
        self._transport = transport

    def describe(self) -> str:
        return f"Trustee KBS {self._url}, resource {self._resource} ({self._provider.tee} evidence)"

    def _verify(self) -> ssl.SSLContext | bool:
        if self._ca_file is None:
            return True
        try:
            return ssl.create_default_context(cafile=str(self._ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise KeyReleaseError(f"cannot use the KBS CA file {self._ca_file}: {exc}") from None

    def fetch(self) -> bytes:
        tee = kbs_tee(self._provider)
        with httpx.Client(
            base_url=self._url,
            verify=self._verify(),
            timeout=self._timeout,
            transport=self._transport,
            follow_redirects=False,
        ) as client:
            challenge = self._call(
                client,
                "POST",
                "/kbs/v0/auth",
                "auth",
                json={"version": PROTOCOL_VERSION, "tee": tee, "extra-params": ""},
            )
            session = challenge.session
            nonce = _json_object(challenge, "auth").get("nonce")
            if not session or not isinstance(nonce, str) or not nonce:
                raise KeyReleaseError("the KBS challenge has no session cookie or no nonce")
            cookie = {"Cookie": f"{SESSION_COOKIE}={session}"}
            private = jwk.JWK.generate(kty="EC", crv="P-256")
            public = {**private.export_public(as_dict=True), "alg": KEY_ALG}
            public.pop("kid", None)
            additional = ""
            digest = runtime_data_digest(
                {"tee-pubkey": public, "nonce": nonce, "additional-evidence": additional}
            )
            attestation = {
                "runtime-data": {"nonce": nonce, "tee-pubkey": public},
                "tee-evidence": {
                    "primary_evidence": kbs_evidence(self._provider, digest),
                    "additional_evidence": additional,
                },
            }
            attested = self._call(
                client, "POST", "/kbs/v0/attest", "attestation", json=attestation, headers=cookie
            )
            # A refreshed cookie, when the KBS sends one, is the one to use.
            session = attested.session or session
            released = self._call(
                client,
                "GET",
                f"/kbs/v0/resource/{self._resource}",
                "resource",
                headers={"Cookie": f"{SESSION_COOKIE}={session}"},
            )
            return _open_jwe(released.text, private)

    def _call(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        step: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> _Answer:
        try:
            with client.stream(method, path, json=json, headers=headers) as response:
                body = read_capped(response, _MAX_RESPONSE)
        except httpx.HTTPError as exc:
            raise KeyReleaseError(
                f"cannot reach the KBS at {self._url} during {step} ({type(exc).__name__}: "
                f"{quoted_detail(str(exc))})"
            ) from None
        if body is None:
            raise KeyReleaseError(f"the KBS {step} answer is larger than {_MAX_RESPONSE} bytes")
        answer = _Answer(response.status_code, body, _session_cookie(response))
        if answer.status == 200:
            return answer
        raise KeyReleaseError(_refusal(step, self._resource, answer))


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    session: str | None  # the kbs-session-id the answer set, if any

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _session_cookie(response: httpx.Response) -> str | None:
    """``kbs-session-id`` from the raw Set-Cookie headers.

    Read by hand: an HTTP cookie jar drops a cookie whose Expires is already past by this
    guest's clock, and the KBS sets Expires by its own.
    """
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name.strip() == SESSION_COOKIE:
            value = rest.split(";", 1)[0].strip()
            return value if value and value.isascii() and value.isprintable() else None
    return None


def _refusal(step: str, resource: str, answer: _Answer) -> str:
    """What the KBS said, in Trustee's ErrorInformation shape when it used it.

    Trustee's protocol document answers a withheld resource 403 and a missing one 404; its
    code answers 401 with the ErrorInformation type ``PolicyDeny`` (or 404 for a bad path).
    Both are read the same way here. The KBS's words are quoted bounded and printable.
    """
    detail, kind = quoted_detail(answer.text), ""
    try:
        body = jsonlib.loads(answer.body)
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            kind = quoted_detail(str(body.get("type", "")).rsplit("/", 1)[-1])[:64]
            detail = quoted_detail(body["detail"])
            detail = f"{kind}: {detail}" if kind else detail
    except ValueError:
        pass
    status = answer.status
    if step == "resource" and (status == 403 or kind == "PolicyDeny"):
        return f"the KBS policy does not release {resource} to this guest (HTTP {status}): {detail}"
    if step == "resource" and status == 404:
        return f"the KBS has no resource {resource} (HTTP 404): {detail}"
    if step == "attestation" and status == 401:
        return f"the KBS refused this guest's attestation (HTTP 401): {detail}"
    return f"the KBS answered HTTP {status} during {step}: {detail}"


def _json_object(answer: _Answer, step: str) -> dict[str, Any]:
    try:
        body = jsonlib.loads(answer.body)
    except ValueError:
        raise KeyReleaseError(f"the KBS {step} answer is not JSON") from None
    if not isinstance(body, dict):
        raise KeyReleaseError(f"the KBS {step} answer is not a JSON object")
    return body


def _open_jwe(text: str, private: jwk.JWK) -> bytes:
    try:
        document = jsonlib.loads(text)
        if not isinstance(document, dict) or "protected" not in document:
            raise ValueError("not a flattened JWE")
        token = jwe.JWE()
        token.allowed_algs = [KEY_ALG, CONTENT_ENC]
        token.deserialize(text, key=private)
    except (ValueError, JWException) as exc:
        raise KeyReleaseError(
            f"the KBS resource answer is not a JWE to this guest's key ({type(exc).__name__})"
        ) from None
    payload = token.payload
    assert isinstance(payload, bytes)
    return payload

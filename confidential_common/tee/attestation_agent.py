"""Evidence from Confidential Containers' Attestation Agent, for containers in a Kata guest.

A container in a CoCo pod cannot reach the guest kernel's configfs-tsm; the guest's
Attestation Agent can, and guest-components' ``api-server-rest`` offers it to the pod on
``http://127.0.0.1:8006`` when the kernel command line carries
``agent.guest_components_rest_api=attestation`` (or ``all``; the default, ``resource``, serves
only the Confidential Data Hub). Read from guest-components v0.21.0 (``api-server-rest``'s
``router.rs``/``utils.rs``, ``attestation-agent/src/lib.rs``, ``attester/src/{tdx,snp}``):

- ``GET /aa/evidence?runtime_data=<URL-safe base64, no padding>&encoding=base64``: the AA
  hands the decoded bytes to its attester, which refuses more than 64, pads shorter ones with
  zeros and puts them into REPORTDATA (TDX) / REPORT_DATA (SNP) as they are, not hashed. We
  send our 64-byte binding, so the report carries exactly what our verifiers expect.
- Without ``encoding`` (and in every release before v0.21.0, which has no ``encoding``)
  ``runtime_data`` is the query text's UTF-8 bytes: 64 arbitrary binary bytes cannot be sent.
  Such an AA takes our 86 characters as runtime data and refuses them as too long (HTTP 500),
  and any report it did produce would not carry our binding: both refuse here.
- The answer is ``application/octet-stream``: the evidence JSON (``aa_evidence``). Errors: 404
  ``Attestation Feature Not Enabled`` when the REST API runs without the attestation feature,
  400 for a bad query, 403 for a non-loopback client, 500 with the AA's message.

The evidence is the guest hardware's, produced by the AA in this pod's guest: the URL must be a
literal loopback address (an AA elsewhere would vouch for a machine that does not hold our
key). Every report is checked to carry the report data asked for.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import httpx

from confidential_common.key_broker.base import is_loopback, quoted_detail, read_capped
from confidential_common.tee.aa_evidence import AaEvidenceError, decode_aa_evidence
from confidential_common.tee.providers import AttestationUnavailable, Evidence
from confidential_common.tee.quotes import EvidenceFormatError, parse_snp_report, parse_tdx_quote

DEFAULT_AA_URL = "http://127.0.0.1:8006"
# A TDX quote is a few KiB; the CCEL event log beside it can reach hundreds.
MAX_EVIDENCE_BYTES = 4 << 20
_ENABLE = (
    "start the guest components' REST API with the evidence endpoint: kernel parameter "
    "agent.guest_components_rest_api=attestation (or all), e.g. in the pod annotation "
    "io.katacontainers.config.hypervisor.kernel_params"
)


def aa_url(value: str) -> str:
    """An http(s) origin on a literal loopback address: the AA of this pod's own guest."""
    parts = urlsplit(value)
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or parts.path not in {"", "/"}
    ):
        raise AttestationUnavailable(
            f"the Attestation Agent URL is an http origin such as {DEFAULT_AA_URL}, got {value!r}"
        )
    if not is_loopback(parts.hostname):
        raise AttestationUnavailable(
            f"the Attestation Agent URL must be a literal loopback address (the AA of this "
            f"pod's own guest), not {value!r}"
        )
    return value.rstrip("/")


class AttestationAgentProvider:
    def __init__(
        self,
        *,
        url: str = DEFAULT_AA_URL,
        expected_tee: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = aa_url(url)
        # The AA's own ttRPC call may take long (a TDX quote goes through the host's QGS).
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        self._transport = transport
        probe = self.collect(bytes(64))
        if expected_tee is not None and probe.tee != expected_tee:
            raise AttestationUnavailable(
                f"configured for {expected_tee} but the Attestation Agent provides {probe.tee}"
            )
        self.tee = probe.tee

    def _fetch(self, report_data: bytes) -> bytes:
        runtime_data = base64.urlsafe_b64encode(report_data).rstrip(b"=").decode()
        where = f"{self._url}/aa/evidence"
        try:
            with (
                httpx.Client(
                    timeout=self._timeout,
                    transport=self._transport,
                    follow_redirects=False,
                    trust_env=False,  # a proxy from the environment must not see this request
                ) as client,
                client.stream(
                    "GET", where, params={"runtime_data": runtime_data, "encoding": "base64"}
                ) as response,
            ):
                body = read_capped(response, MAX_EVIDENCE_BYTES)
                status = response.status_code
        except httpx.TimeoutException:
            raise AttestationUnavailable(
                f"the Attestation Agent at {self._url} did not answer in time"
            ) from None
        except httpx.HTTPError as exc:
            raise AttestationUnavailable(
                f"cannot reach the Attestation Agent's REST API at {self._url} "
                f"({type(exc).__name__}): in a Confidential Containers pod, {_ENABLE}"
            ) from None
        if body is None:
            raise AttestationUnavailable(
                f"the Attestation Agent's answer is larger than {MAX_EVIDENCE_BYTES} bytes"
            )
        if status != 200:
            raise AttestationUnavailable(self._refusal(status, body))
        return body

    def _refusal(self, status: int, body: bytes) -> str:
        detail = quoted_detail(body.decode("utf-8", errors="replace"))
        said = f"HTTP {status} {detail}".rstrip()
        if status == 404 and "Attestation Feature Not Enabled" in detail:
            return f"the REST API at {self._url} lacks its attestation feature ({said}): {_ENABLE}"
        if status == 404:
            return f"{self._url} has no /aa/evidence ({said}): is it CoCo's api-server-rest?"
        if status == 500:
            return (
                f"the Attestation Agent produced no evidence ({said}). guest-components before "
                "v0.21.0 read runtime_data as text and refuse our 64 binary bytes: this provider "
                "needs an api-server-rest with encoding=base64 (v0.21.0 or later)"
            )
        if 300 <= status < 400:
            return f"the Attestation Agent answered a redirect ({said}); redirects are not followed"
        return f"the Attestation Agent refused the evidence request ({said})"

    def collect(self, report_data: bytes) -> Evidence:
        if len(report_data) != 64:
            raise ValueError("report data must be 64 bytes")
        body = self._fetch(report_data)
        try:
            answer = decode_aa_evidence(body)
            if answer.tee == "tdx":
                quote = parse_tdx_quote(answer.blob)
                evidence = Evidence(
                    "tdx", "tdx-quote", answer.blob, quote.report_data, quote.measurements()
                )
            else:
                report = parse_snp_report(answer.blob)
                evidence = Evidence(
                    "sev-snp",
                    "sev-snp-report",
                    answer.blob,
                    report.report_data,
                    report.measurements(),
                    answer.aux,
                )
        except (AaEvidenceError, EvidenceFormatError) as exc:
            raise AttestationUnavailable(
                f"the Attestation Agent's answer is not evidence this provider can use: {exc}"
            ) from None
        if evidence.report_data != report_data:
            raise AttestationUnavailable(
                "the Attestation Agent's report does not carry our report data (an AA that "
                "hashes or re-encodes runtime_data, or someone else's report): refusing it"
            )
        return evidence

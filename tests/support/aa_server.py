"""The Attestation Agent's REST evidence endpoint, for tests.

    python -m tests.support.aa_server --tee tdx|sev-snp --template PATH [--vcek PATH]
        [--control PATH] [--port 0]

In a Confidential Containers pod, guest-components' api-server-rest listens on 127.0.0.1:8006;
with ``agent.guest_components_rest_api=attestation`` (or ``all``) it serves
``GET /aa/evidence?runtime_data=...[&encoding=base64]`` by asking the Attestation Agent over
ttRPC for its primary attester's evidence. This server does what that chain does, read from
guest-components v0.21.0 (``api-server-rest/src/{router,utils}.rs``,
``attestation-agent/attestation-agent/src/lib.rs``, ``attester/src/{tdx,snp}/mod.rs``), with a
public quote or report (``--template``) standing in for the hardware:

- ``runtime_data`` is URL-safe base64 without padding when ``encoding=base64`` (a bad value, or
  another encoding, is 400 ``BAD REQUEST``), else the query text's UTF-8 bytes;
- the attester refuses more than 64 bytes (500 with the AA's message), pads with zeros to 64
  and places them, unhashed, at REPORTDATA (TDX: TD report offset 520) or REPORT_DATA (SNP:
  0x50) of the template; the rest of the template is unchanged, so its signature only holds
  when the runtime data equals the template's own report data;
- the answer is 200 ``application/octet-stream``: compact JSON with sorted keys (serde_json's
  ``Value``), TDX ``{"cc_eventlog": null, "quote": base64}``, SNP ``{"attestation_report":
  {...}, "cert_chain": [...] or null}`` with the report in the ``sev`` crate's (6.x)
  serialised form (``snp_report_document``) and ``--vcek`` as a ``VCEK`` entry;
- ``/aa/*`` is 404 ``Attestation Feature Not Enabled`` when the features leave attestation
  out, ``GET /info`` a small JSON, a non-loopback client 403, anything else 404
  ``URL NOT FOUND``.

``--control PATH`` (JSON, re-read on every request; absent means all defaults) changes the
behaviour while the server runs: ``features`` (``attestation``, ``resource``, ``all``),
``legacy_runtime_data`` (true: ignore ``encoding`` as releases before v0.21.0 do) and
``misbehave`` (``oversized``, ``not-json``, ``wrong-shape``, ``foreign-report-data``,
``sample``, ``redirect``, ``slow``) for hostile answers. Differences from the real chain: no
event log; ``/aa/token`` answers 500 (no KBS here); the 500 text is the AA's message only.
Binds 127.0.0.1 only and prints ``aa-test-server listening on http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import ipaddress
import json
import re
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from confidential_common.tee.quotes import parse_tdx_quote
from tests.support.kbs_process import ServerProcess, _server_process
from tests.support.kbs_server import serve_on_loopback

NAME = "aa-test-server"
AA_ERROR = "[ERROR:attestation-agent] AA-KBC get evidence failed"
OVERSIZED_BYTES = 5 << 20
SLOW_S = 3.0
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def _log_line(request: Request, status: int, reason: str) -> None:
    print(
        f"{NAME}: {request.method} {request.url.path} {status} {reason}",
        file=sys.stderr,
        flush=True,
    )


def _from_loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def decode_runtime_data(value: str, encoding: str | None) -> bytes | None:
    """api-server-rest's ``decode_runtime_data``; None where it answers 400."""
    if encoding is None:
        return value.encode()
    if encoding != "base64" or not _BASE64URL.match(value) or len(value) % 4 == 1:
        return None
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except binascii.Error:
        return None
    # The base64 crate refuses non-canonical trailing bits; a round trip finds them.
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() != value:
        return None
    return decoded


# --- the hardware stand-in: the template with the runtime data placed as the attester does


def tdx_quote_with(template: bytes, report_data: bytes) -> bytes:
    at = parse_tdx_quote(template).body_offset + 520
    return template[:at] + report_data + template[at + 64 :]


def snp_report_with(template: bytes, report_data: bytes) -> bytes:
    return template[:0x50] + report_data + template[0x90:]


def _generation_is_turin(raw: bytes, version: int) -> bool:
    """The sev crate's choice of TCB layout: from CHIP_ID (v2) or the CPUID family/model."""
    if version == 2:
        chip_id = raw[0x1A0:0x1E0]
        if chip_id == bytes(64):
            raise ValueError("masked CHIP_ID: the sev crate cannot tell the generation")
        return chip_id[8:] == bytes(56)
    family, model = raw[0x188], raw[0x189]
    if family == 0x19 and (model <= 0x1F or 0xA0 <= model <= 0xAF):
        return False
    if family == 0x1A and model <= 0x11:
        return True
    raise ValueError(f"unknown SEV-SNP CPU family {family:#x} model {model:#x}")


def _tcb(raw: bytes, turin: bool) -> dict[str, Any]:
    fmc, bootloader, tee, snp = (
        (raw[0], raw[1], raw[2], raw[3]) if turin else (None, *raw[0:2], raw[6])
    )
    return {"fmc": fmc, "bootloader": bootloader, "tee": tee, "snp": snp, "microcode": raw[7]}


def snp_report_document(raw: bytes) -> dict[str, Any]:
    """The report as the sev crate (6.3) parses it (``AttestationReport::from_bytes``) and
    serde serialises it: named fields, byte arrays as lists of numbers, reserved bytes gone."""
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0)
    if version < 2:
        raise ValueError(f"unsupported report version {version}")
    turin = _generation_is_turin(raw, version)
    vmpl, sig_algo = struct.unpack_from("<II", raw, 0x30)
    plat_info, key_info = struct.unpack_from("<QI", raw, 0x40)
    cpuid = [raw[0x188], raw[0x189], raw[0x18A]] if version >= 3 else [None, None, None]
    mit: list[int | None] = (
        list(struct.unpack_from("<QQ", raw, 0x1F8)) if version >= 5 else [None, None]
    )

    def array(start: int, length: int) -> list[int]:
        return list(raw[start : start + length])

    def firmware(at: int) -> dict[str, int]:
        return {"major": raw[at + 2], "minor": raw[at + 1], "build": raw[at]}

    return {
        "version": version,
        "guest_svn": guest_svn,
        "policy": policy,
        "family_id": array(0x10, 16),
        "image_id": array(0x20, 16),
        "vmpl": vmpl,
        "sig_algo": sig_algo,
        "current_tcb": _tcb(raw[0x38:0x40], turin),
        "plat_info": plat_info,
        "key_info": key_info,
        "report_data": array(0x50, 64),
        "measurement": array(0x90, 48),
        "host_data": array(0xC0, 32),
        "id_key_digest": array(0xE0, 48),
        "author_key_digest": array(0x110, 48),
        "report_id": array(0x140, 32),
        "report_id_ma": array(0x160, 32),
        "reported_tcb": _tcb(raw[0x180:0x188], turin),
        "cpuid_fam_id": cpuid[0],
        "cpuid_mod_id": cpuid[1],
        "cpuid_step": cpuid[2],
        "chip_id": array(0x1A0, 64),
        "committed_tcb": _tcb(raw[0x1E0:0x1E8], turin),
        "current": firmware(0x1E8),
        "committed": firmware(0x1EC),
        "launch_tcb": _tcb(raw[0x1F0:0x1F8], turin),
        "launch_mit_vector": mit[0],
        "current_mit_vector": mit[1],
        "signature": {"r": array(0x2A0, 72), "s": array(0x2E8, 72)},
    }


class Attester:
    """The AA's primary attester: 64 bytes of runtime data at most, zero-padded, unhashed."""

    def __init__(self, tee: str, template: bytes, vcek: bytes | None) -> None:
        self.tee = tee
        self.template = template
        self.vcek = vcek

    def evidence(self, runtime_data: bytes) -> dict[str, Any] | None:
        if len(runtime_data) > 64:
            return None
        report_data = runtime_data.ljust(64, b"\0")
        if self.tee == "tdx":
            quote = tdx_quote_with(self.template, report_data)
            return {"cc_eventlog": None, "quote": base64.b64encode(quote).decode()}
        report = snp_report_with(self.template, report_data)
        chain = [{"cert_type": "VCEK", "data": list(self.vcek)}] if self.vcek else None
        return {"attestation_report": snp_report_document(report), "cert_chain": chain}


def _control(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _serde_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def make_app(attester: Attester, *, control: Path | None = None) -> ASGIApp:
    async def serve(request: Request) -> Response:
        settings = _control(control)
        if settings.get("misbehave") == "slow" and request.url.path == "/aa/evidence":
            await asyncio.sleep(SLOW_S)
        response, reason = _answer(request, settings)
        _log_line(request, response.status_code, reason)
        return response

    def _answer(request: Request, settings: dict[str, Any]) -> tuple[Response, str]:
        if not _from_loopback(request):
            return PlainTextResponse("Forbidden", 403), "not from loopback"
        features = settings.get("features", "attestation")
        path = request.url.path
        if path == "/info":
            if request.method != "GET":
                return PlainTextResponse("Method Not Allowed", 405), "info is GET only"
            info: dict[str, Any] = {"version": "v0.21.0-test", "feature": features}
            if features != "resource":
                info["tee"] = {"tdx": "tdx", "sev-snp": "snp"}[attester.tee]
            return JSONResponse(info), "info"
        if path.startswith("/aa/"):
            if features not in {"attestation", "all"}:
                return PlainTextResponse("Attestation Feature Not Enabled", 404), "aa off"
            if path == "/aa/evidence" and request.method == "GET":
                return _evidence(request, settings)
            if path == "/aa/token" and request.method == "GET":
                if "token_type" not in request.query_params:
                    return PlainTextResponse("BAD REQUEST", 400), "no token_type"
                return PlainTextResponse("no KBS in the test server", 500), "token"
            return PlainTextResponse("URL NOT FOUND", 404), "no such aa endpoint"
        if path.startswith("/cdh/") and features not in {"resource", "all"}:
            return PlainTextResponse("Resource Feature Not Enabled", 404), "cdh off"
        return PlainTextResponse("URL NOT FOUND", 404), "no such endpoint"

    def _evidence(request: Request, settings: dict[str, Any]) -> tuple[Response, str]:
        value = request.query_params.get("runtime_data")
        if value is None:
            return PlainTextResponse("BAD REQUEST", 400), "no runtime_data"
        encoding = (
            None if settings.get("legacy_runtime_data") else request.query_params.get("encoding")
        )
        runtime_data = decode_runtime_data(value, encoding)
        if runtime_data is None:
            return PlainTextResponse("BAD REQUEST", 400), "bad runtime_data"
        misbehave = settings.get("misbehave")
        if misbehave == "foreign-report-data":
            runtime_data = b"someone else's key"
        evidence = attester.evidence(runtime_data)
        if evidence is None:
            return PlainTextResponse(AA_ERROR, 500), f"runtime data of {len(runtime_data)} bytes"
        body = _serde_json(evidence)
        if misbehave == "oversized":

            def flood() -> Iterator[bytes]:
                for _ in range(OVERSIZED_BYTES // 65536):
                    yield b"A" * 65536

            stream = StreamingResponse(flood(), 200, media_type="application/octet-stream")
            return stream, "oversized"
        if misbehave == "not-json":
            body = b"\x00\x01 this is not evidence"
        elif misbehave == "wrong-shape":
            body = _serde_json({"quote": 7, "cc_eventlog": None})
        elif misbehave == "sample":
            body = _serde_json({"svn": "1", "report_data": base64.b64encode(runtime_data).decode()})
        elif misbehave == "redirect":
            return Response(b"", 302, {"location": "http://127.0.0.1:9/aa/evidence"}), "redirect"
        answer = Response(body, 200, media_type="application/octet-stream")
        return answer, f"evidence ({attester.tee}, {misbehave or 'faithful'})"

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/{path:path}", serve, methods=methods)])


@contextmanager
def aa_server_process(
    tee: str,
    template: Path,
    directory: Path,
    *,
    vcek: Path | None = None,
) -> Iterator[tuple[ServerProcess, Path]]:
    """The test AA on a free loopback port; yields it and its control file (absent at first:
    write JSON there with ``write_control`` to change its behaviour)."""
    directory.mkdir(parents=True, exist_ok=True)
    control = directory / f"aa-{tee}-control.json"
    args = ["--tee", tee, "--template", str(template), "--control", str(control), "--port", "0"]
    if vcek is not None:
        args += ["--vcek", str(vcek)]
    log = directory / f"aa-{tee}-server.stderr"
    with _server_process("tests.support.aa_server", args, log, f"{NAME} listening on") as server:
        yield server, control


def write_control(control: Path, **settings: object) -> None:
    partial = control.with_name(control.name + ".partial")
    partial.write_text(json.dumps(settings))
    partial.replace(control)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.aa_server")
    parser.add_argument("--tee", choices=("tdx", "sev-snp"), required=True)
    parser.add_argument("--template", type=Path, required=True, help="a quote or report")
    parser.add_argument("--vcek", type=Path, help="SNP: the VCEK to put into cert_chain")
    parser.add_argument("--control", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    raw = args.template.read_bytes()
    if args.template.suffix in {".hex", ".txt"}:
        raw = bytes.fromhex(raw.decode().strip())
    vcek = args.vcek.read_bytes() if args.vcek else None
    app = make_app(Attester(args.tee, raw, vcek), control=args.control)
    asyncio.run(serve_on_loopback(app, name=NAME, port=args.port))


if __name__ == "__main__":
    main()

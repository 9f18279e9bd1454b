"""The Confidential Data Hub's REST resource endpoint, for tests.

    python -m tests.support.cdh_server --resource repo/type/tag=PATH [--resource ...]
        [--port 0] [--missing-status 404|500]

In a Confidential Containers pod, guest-components' api-server-rest listens on
127.0.0.1:8006 and serves ``GET /cdh/resource/<repository>/<type>/<tag>``: it asks the
Confidential Data Hub over ttRPC for ``kbs:///<repository>/<type>/<tag>``, and the CDH (through
the attestation agent) does the whole RCAR handshake with the KBS itself, so the container
gets the plaintext bytes without ever holding a TEE key. This server stands in for that
whole chain with fixed files: no attestation happens here.

Answers, as api-server-rest does: 200 ``application/octet-stream`` with the raw bytes;
``GET /info`` a small JSON; a request from a non-loopback address 403; anything else 404
``URL NOT FOUND``. Differences: an unknown resource is 404 by default, where the real server
relays the CDH's failure as 500 with its error text (``--missing-status 500`` does that); a
method other than GET on a resource is 405 here, where the real server ignores the method.
Binds 127.0.0.1 only and prints ``cdh-test-server listening on http://127.0.0.1:<port>`` once
it accepts connections; each request is logged to stderr in one line, never the bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from collections.abc import Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.support.kbs_server import serve_on_loopback

NAME = "cdh-test-server"
LISTEN_PORT_IN_A_POD = 8006


def _log_line(request: Request, status: int, reason: str) -> None:
    line = f"{NAME}: {request.method} {request.url.path} {status} {reason}"
    print(line, file=sys.stderr, flush=True)


def _from_loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def make_app(resources: Mapping[str, Path], *, missing_status: int = 404) -> ASGIApp:
    async def serve(request: Request) -> Response:
        response, reason = _answer(request)
        _log_line(request, response.status_code, reason)
        return response

    def _answer(request: Request) -> tuple[Response, str]:
        if not _from_loopback(request):
            return PlainTextResponse("Forbidden", 403), "not from loopback"
        path = request.url.path
        if path == "/info":
            if request.method != "GET":
                return PlainTextResponse("Method Not Allowed", 405), "info is GET only"
            return JSONResponse({"version": "test", "feature": "resource"}), "info"
        prefix = "/cdh/resource/"
        if not path.startswith(prefix):
            return PlainTextResponse("URL NOT FOUND", 404), "no such endpoint"
        if request.method != "GET":
            return PlainTextResponse("Method Not Allowed", 405), "resources are GET only"
        name = path[len(prefix) :]
        source = resources.get(name)
        try:
            if source is None:
                raise FileNotFoundError(name)
            payload = source.read_bytes()
        except OSError:
            text = "URL NOT FOUND" if missing_status == 404 else f"get resource failed: {name}"
            return PlainTextResponse(text, missing_status), f"no resource {name}"
        ok = Response(payload, 200, media_type="application/octet-stream")
        return ok, f"served {name} ({len(payload)} bytes)"

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/{path:path}", serve, methods=methods)])


def _resource_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    parts = name.split("/")
    if not sep or len(parts) != 3 or not all(parts) or not path:
        raise argparse.ArgumentTypeError(f"expected repository/type/tag=PATH, got {text!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.cdh_server")
    parser.add_argument("--resource", type=_resource_arg, action="append", default=[])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--missing-status", type=int, choices=(404, 500), default=404)
    args = parser.parse_args(argv)
    app = make_app(dict(args.resource), missing_status=args.missing_status)
    asyncio.run(serve_on_loopback(app, name=NAME, port=args.port))


if __name__ == "__main__":
    main()

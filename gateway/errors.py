"""The gateway's client-facing errors: the shared OpenAI error shape, plus the errors only a
gateway answers (its upstreams failing or missing).

``GatewayError`` is ``confidential_common.errors.APIError`` under the gateway's name, so an
error raised by a shared helper (``bad_request``, ``from_validation_error``) is a
``GatewayError`` too.
"""

from __future__ import annotations

import logging

from confidential_common.errors import (
    APIError,
    bad_request,
    from_validation_error,
    parameter_shaped,
)
from gateway.upstreams.base import UpstreamError
from gateway.upstreams.router import NoUpstream

GatewayError = APIError
log = logging.getLogger("gateway.errors")

__all__ = [
    "GatewayError",
    "bad_request",
    "from_validation_error",
    "no_upstream",
    "parameter_shaped",
    "stream_failure",
    "upstream_error",
    "upstream_failed",
]


def upstream_failed(message: str) -> GatewayError:
    return GatewayError(502, message, type="upstream_error", code="upstream_failed")


def no_upstream(model: str) -> GatewayError:
    return GatewayError(
        503,
        f"No healthy upstream is available for model '{model}' right now; retry shortly.",
        type="server_error",
        code="no_healthy_upstream",
        headers={"Retry-After": "2"},
    )


def upstream_error(exc: UpstreamError | NoUpstream) -> GatewayError:
    """What the client sees when the routing layer gives up."""
    if isinstance(exc, NoUpstream):
        last = exc.last_error
        # Nobody reachable, or everybody overloaded: the client should simply retry later.
        if last is None or last.status in {429, 503} or (last.status is None and last.retryable):
            return no_upstream(exc.model)
        if last.timed_out:
            return GatewayError(
                504, "The upstream timed out.", type="upstream_error", code="upstream_timeout"
            )
        return upstream_failed("The upstream failed to answer; nothing was generated.")
    if exc.client_error and exc.status is not None and exc.body is not None:
        error = exc.body["error"]
        return GatewayError(
            exc.status,
            str(error.get("message") or "The upstream rejected the request."),
            type=str(error.get("type") or "invalid_request_error"),
            param=error.get("param"),
            code=error.get("code"),
        )
    return upstream_failed("The upstream failed while answering.")


def stream_failure(exc: Exception) -> GatewayError:
    """The in-band error that ends a stream which failed after it started."""
    if isinstance(exc, UpstreamError):
        log.warning("stream failed after it started: %s", exc)
        return upstream_error(exc)
    if isinstance(exc, GatewayError):
        return exc
    # The type only: an exception's text may quote request content.
    log.error("stream failed after it started: unhandled %s", type(exc).__name__)
    return GatewayError(500, "The gateway hit an internal error.", type="server_error")

"""The engine's answers when it cannot take a request now: full, or shutting down (503s the
gateway's router reads as overload, moving the request elsewhere, never as a failure)."""

from __future__ import annotations

from confidential_common.errors import APIError

QUEUE_FULL_RETRY_AFTER_S = 1


def overloaded(detail: str, what: str = "engine") -> APIError:
    return APIError(
        503,
        f"The {what} is at capacity ({detail}); retry after a moment.",
        type="server_error",
        code="engine_overloaded",
        headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)},
    )


def stopping() -> APIError:
    return APIError(
        503, "The engine is shutting down.", type="server_error", code="engine_stopping"
    )

"""The one interface every key broker client offers, and what they share."""

from __future__ import annotations

import ipaddress
import re
from typing import Protocol
from urllib.parse import urlsplit

import httpx

RESOURCE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
# What of a broker's refusal is quoted in our messages: enough to act on, never a flood.
_DETAIL_CHARS = 300


class KeyReleaseError(Exception):
    """The broker did not release the key (refused, unreachable, or answered nonsense)."""


class KeyBroker(Protocol):
    kind: str  # "kbs" | "cdh" | "file": the word in tokens and logs

    def describe(self) -> str:
        """Where the key comes from, for start-up logs (no secrets)."""
        ...

    def fetch(self) -> bytes:
        """The key material; raises KeyReleaseError."""
        ...


def resource_path(value: str) -> str:
    """A KBS resource path ``repository/type/tag``: three plain, non-empty segments."""
    segments = value.strip("/").split("/")
    if len(segments) != 3 or not all(
        RESOURCE_SEGMENT.match(s) and s not in {".", ".."} for s in segments
    ):
        raise ValueError(
            f"a key resource is repository/type/tag (three segments of letters, digits, "
            f"'.', '_' or '-'), got {value!r}"
        )
    return "/".join(segments)


def is_loopback(host: str | None) -> bool:
    """A literal loopback address; a name (even ``localhost``) is whatever the resolver says."""
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def broker_url(value: str, *, loopback_only: bool = False) -> str:
    """An http(s) base URL: https, or plain http to a loopback host only."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"a key broker URL is http(s)://host[:port], got {value!r}")
    if loopback_only and not is_loopback(parts.hostname):
        raise ValueError(f"this key broker is in-guest: its URL must be loopback, not {value!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"plain http is only allowed to a loopback host, not {value!r}")
    return value.rstrip("/")


def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """A streamed response's body, or None once it passes ``limit`` bytes (read no further)."""
    body = bytearray()
    for block in response.iter_bytes():
        body += block
        if len(body) > limit:
            return None
    return bytes(body)


def quoted_detail(text: str) -> str:
    """A broker's own words, printable and bounded, for an error message."""
    clean = "".join(c if c.isprintable() else " " for c in text).strip()
    return clean[:_DETAIL_CHARS] + ("..." if len(clean) > _DETAIL_CHARS else "")

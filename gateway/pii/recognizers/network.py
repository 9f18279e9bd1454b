"""IP and MAC addresses of hosts, not the versions, networks and loopbacks that look alike."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from gateway.pii.entities import IP_ADDRESS, MAC_ADDRESS
from gateway.pii.findings import Finding
from gateway.pii.recognizers.base import window_before

_IPV4 = re.compile(
    r"(?<![\w.\-])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?P<cidr>/\d{1,2})?(?![\w\-]|\.\d)"
)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|\d+\.\d+\.\d+\.\d+)(?![\w:])"
)
_VERSION_CONTEXT = re.compile(
    r"(?i)(?:\b(?:v|ver|version|versions|release|rel|build|firmware|fw|kernel|python|node|"
    r"java|chrome|chromium|firefox|ios|android|macos|windows|tag|image|package|pkg|update|"
    r"upgrade|patch|sdk|api|app|client|driver|bios)\s*[:=]?\s*|(?:==|>=|<=|~=|\^|@|\bv)\s*|[a-z]-)$"
)
_MAC = re.compile(
    r"(?<![\w:\-.])[0-9A-Fa-f]{2}([:\-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}(?![\w:\-])"
    r"|(?<![\w.])[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(?![\w.])"
)


def _personal_ipv4(address: ipaddress.IPv4Address, cidr: str | None) -> bool:
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        return False
    if str(address).startswith("255.") or address.is_reserved:
        return False  # netmasks and broadcast
    if all(octet < 10 for octet in address.packed):
        return False  # "1.2.3.4": a version or an example, not a host anyone uses
    if cidr is not None:
        network = ipaddress.ip_network(f"{address}{cidr}", strict=False)
        return network.network_address != address  # a host written with its prefix length
    return True


class IpRecognizer:
    entity_types = frozenset({IP_ADDRESS})

    def find(self, text: str) -> Iterator[Finding]:
        if "." in text:
            for match in _IPV4.finditer(text):
                if _VERSION_CONTEXT.search(window_before(text, match.start(), 24)):
                    continue
                address = ipaddress.IPv4Address(match.group(0).split("/")[0])
                if _personal_ipv4(address, match.group("cidr")):
                    yield Finding(match.start(), match.end(), IP_ADDRESS, 0.9)
        if "::" in text or text.count(":") >= 4:
            for match in _IPV6.finditer(text):
                try:
                    address6 = ipaddress.IPv6Address(match.group(0))
                except ValueError:
                    continue
                if address6.is_loopback or address6.is_unspecified:
                    continue
                yield Finding(match.start(), match.end(), IP_ADDRESS, 0.9)


class MacRecognizer:
    entity_types = frozenset({MAC_ADDRESS})

    def find(self, text: str) -> Iterator[Finding]:
        for match in _MAC.finditer(text):
            if match.group(0).replace(":", "").replace("-", "").strip("0f.F") == "":
                continue  # all-zero or broadcast
            yield Finding(match.start(), match.end(), MAC_ADDRESS, 0.8)

"""What a ``kind: discovered`` deployment accepts, and what it refuses by name."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from gateway.config import DiscoveredDeployment

ADAPTER = TypeAdapter(DiscoveredDeployment)
GOOD = {
    "kind": "discovered",
    "dns_name": "smollm2-engines.llm.svc.cluster.local",
    "attestation": {"allow_simulated": True},
}


def test_a_headless_service_name_with_defaults() -> None:
    deployment = ADAPTER.validate_python(GOOD)
    assert deployment.port == 9443 and deployment.resolve_interval_s == 5.0
    assert deployment.dns_server is None and not deployment.ipv6


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dns_name": "http://engines"}, "dns_name"),
        ({"dns_name": "engines..svc"}, "dns_name"),
        ({"dns_name": "a" * 300}, "dns_name"),
        ({"dns_server": "dns.cluster.local"}, "dns_server"),
        ({"dns_server": "10.0.0.10:99999"}, "dns_server"),
        ({"port": 0}, "port"),
        ({"resolve_interval_s": 0}, "resolve_interval_s"),
        ({"attestation": None}, "attestation"),
        ({"base_url": "https://x"}, "base_url"),
    ],
)
def test_refusals_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ADAPTER.validate_python({**GOOD, **change})
    assert field in str(info.value)

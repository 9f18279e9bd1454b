"""A request's PII policy covers every group that may serve it; raw data needs consent."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, RoutePIIPolicy, parse_config
from gateway.pii.policy import RoutePolicy, effective_policies

TYPES = ["EMAIL_ADDRESS", "PERSON", "US_SSN", "DATE_OF_BIRTH"]
KEYS = [{"name": "k", "sha256": "a" * 64}]
LOCAL = [{"kind": "local"}]
EXTERNAL = [{"kind": "remote", "base_url": "https://api.example.com/v1"}]


def config(*models: dict[str, Any]) -> Any:
    return parse_config({"api_keys": KEYS, "models": list(models)}, env={})


def test_local_off_route_falling_back_to_an_external_route_gets_its_policy() -> None:
    parsed = config(
        {"name": "local", "deployments": LOCAL, "pii": {"mode": "off"}, "fallback": "ext"},
        {"name": "ext", "deployments": EXTERNAL, "pii": {"entities": ["email"]}},
    )
    policies = effective_policies(parsed.models, TYPES, False)
    assert policies["local"].mode == "tokenize"
    assert policies["local"].entities == {"EMAIL_ADDRESS"}
    assert policies["local"].digest == policies["ext"].digest


def test_strictest_mode_union_of_entities_and_redact_introduced_over_a_cycle() -> None:
    parsed = config(
        {"name": "a", "deployments": LOCAL, "pii": {"entities": ["ssn"]}, "fallback": "b"},
        {
            "name": "b",
            "deployments": LOCAL,
            "pii": {"mode": "redact", "entities": ["DOB"], "redact_introduced": True},
            "fallback": "a",
        },
    )
    policy = effective_policies(parsed.models, TYPES, False)["a"]
    assert policy.mode == "redact"
    assert policy.entities == {"US_SSN", "DATE_OF_BIRTH"}
    assert policy.redact_introduced is True


def test_off_chain_that_leaves_the_guest_without_consent_all_along_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.fallback"):
        config(
            {"name": "local", "deployments": LOCAL, "pii": {"mode": "off"}, "fallback": "ext"},
            {
                "name": "ext",
                "deployments": EXTERNAL,
                "pii": {"mode": "off", "allow_raw_pii": True},
            },
        )
    config(
        {
            "name": "local",
            "deployments": LOCAL,
            "pii": {"mode": "off", "allow_raw_pii": True},
            "fallback": "ext",
        },
        {"name": "ext", "deployments": EXTERNAL, "pii": {"mode": "off", "allow_raw_pii": True}},
    )


def test_route_entities_accept_aliases() -> None:
    policy = RoutePolicy.resolve(RoutePIIPolicy(entities=["email", "SSN", "dob"]), TYPES, False)
    assert policy.entities == {"EMAIL_ADDRESS", "US_SSN", "DATE_OF_BIRTH"}
    with pytest.raises(ValueError, match="unknown PII entity types"):
        RoutePolicy.resolve(RoutePIIPolicy(entities=["shoe_size"]), TYPES, False)

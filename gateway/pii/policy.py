"""Route PII policies, resolved against the detector and widened over fallback chains.

A request for model M may be served by M's group or by any group reachable through
``fallback``; the router decides only after the request was tokenized. So a request gets a
policy at least as strict as every group that may serve it: the strictest mode
(off < tokenize < redact < block), the union of the acting groups' entity types, and
``redact_introduced`` if any of them asks for it. The digest names that effective policy,
and is what the response token reports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.config import ModelConfig, RoutePIIPolicy, fallback_chain
from gateway.pii.entities import canonical

STRICTNESS = {"off": 0, "tokenize": 1, "redact": 2, "block": 3}


@dataclass(frozen=True)
class RoutePolicy:
    """A request's PII policy, resolved against what the detector can find."""

    mode: str
    entities: frozenset[str]
    redact_introduced: bool
    digest: str

    @classmethod
    def resolve(cls, policy: RoutePIIPolicy, entity_types: Iterable[str], ner: bool) -> RoutePolicy:
        """One route's own policy; unknown entity types stop start-up."""
        return cls.strictest([policy], entity_types, ner)

    @classmethod
    def strictest(
        cls, policies: Sequence[RoutePIIPolicy], entity_types: Iterable[str], ner: bool
    ) -> RoutePolicy:
        """The policy at least as strict as each of ``policies``."""
        known = set(entity_types)
        mode = max((p.mode for p in policies), key=STRICTNESS.__getitem__)
        acting = [p for p in policies if p.mode != "off"] or list(policies)
        wanted: set[str] = set()
        for policy in acting:
            listed = {canonical(e) for e in policy.entities}
            unknown = sorted(listed - known)
            if unknown:
                raise ValueError(f"unknown PII entity types {unknown}; known: {sorted(known)}")
            wanted |= listed or known
        redact_introduced = any(p.redact_introduced for p in acting if p.mode != "off")
        described = {
            "mode": mode,
            "entities": sorted(wanted),
            "redact_introduced": redact_introduced,
            "ner": ner,
            "allow_raw_pii": all(p.allow_raw_pii for p in policies),
        }
        digest = hashlib.sha256(
            json.dumps(described, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        return cls(mode, frozenset(wanted), redact_introduced, digest)


def effective_policies(
    models: Sequence[ModelConfig], entity_types: Iterable[str], ner: bool
) -> Mapping[str, RoutePolicy]:
    """Each model's effective policy: the strictest over its whole fallback chain."""
    known = list(entity_types)
    by_name = {m.name: m for m in models}
    return {
        m.name: RoutePolicy.strictest(
            [by_name[name].pii for name, _ in fallback_chain(models, m.name)], known, ner
        )
        for m in models
    }

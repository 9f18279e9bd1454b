"""The one readable start-up summary."""

from __future__ import annotations

from pathlib import Path

from gateway.attestation.service import AttestationService
from gateway.config import GatewayConfig, LiteLLMDeployment, LocalDeployment
from gateway.engines import EngineProcess
from gateway.pii.stage import PIIStage
from gateway.tls import TLSIdentity


def startup_summary(
    config: GatewayConfig,
    config_path: Path,
    identity: TLSIdentity | None,
    engines: list[EngineProcess],
    pii: PIIStage,
    attestation: AttestationService,
) -> str:
    scheme = "http" if identity is None else "https"
    listener = config.listener
    lines = [
        "confidential-gateway is serving",
        f"  url          {scheme}://{listener.host}:{listener.port}/v1",
        f"  config       {config_path}",
    ]
    if identity is None:
        lines.append("  tls          OFF (plain_http on a loopback address; development only)")
    else:
        origin = "generated in memory at start-up" if identity.generated else "operator files"
        lines += [
            f"  tls cert     {identity.cert_path} ({origin})",
            f"  cert sha256  {identity.fingerprint_sha256}",
            f"  key sha256   {identity.spki_sha256} (SubjectPublicKeyInfo)",
        ]
    lines.append(f"  tee          {attestation.tee}")
    if attestation.simulated:
        lines.append("    WARNING: simulated attestation: no hardware vouches for these keys")
    lines += [
        f"  signing key  ES256, kid {attestation.key.kid}",
        f"  keyset       sha256 {attestation.keyset_digest}",
    ]
    lines.append(f"  api keys     {len(config.api_keys)} configured")
    lines.append(
        "  pii          recognizers + name gazetteers + encodings"
        + (" + NER (spaCy en_core_web_sm)" if pii.uses_ner else "")
    )
    by_name = {e.name: e for e in engines}
    for model in config.models:
        policy = pii.policy(model.name)
        lines.append(
            f"  model        {model.name}, pii {policy.mode} (policy {policy.digest[:16]})"
            + (f", fallback {model.fallback}" if model.fallback else "")
        )
        if model.pii.mode == "off" and model.leaves_guest:
            lines.append("    WARNING: raw PII may leave this guest on this route (allow_raw_pii)")
        for index, deployment in enumerate(model.deployments):
            if isinstance(deployment, LocalDeployment):
                for replica in range(deployment.replicas):
                    engine = by_name[f"{model.name}/local-{index}.{replica}"]
                    weights = (
                        deployment.model_path
                        or f"{deployment.model_package}:{deployment.model_file}"
                    )
                    lines.append(
                        f"    local engine pid {engine.pid}, {deployment.slots} slots x "
                        f"{deployment.ctx_per_slot} tokens, weights {weights}"
                    )
            elif isinstance(deployment, LiteLLMDeployment):
                lines.append(
                    f"    external provider via litellm: {deployment.model}"
                    + (f" at {deployment.api_base}" if deployment.api_base else "")
                    + " (outside this guest; receives tokenized prompts)"
                )
            else:
                lines.append(
                    f"    remote {deployment.base_url} (model {deployment.model or model.name})"
                )
    if identity is not None:
        lines.append(
            f"  try          curl --cacert {identity.cert_path} -H 'Authorization: Bearer <key>' "
            f"{scheme}://{listener.host}:{listener.port}/v1/models"
        )
    return "\n".join(lines)

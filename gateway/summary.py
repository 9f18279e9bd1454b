"""The one readable start-up summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from confidential_common.tls import TLSIdentity
from gateway.attestation.service import AttestationService
from gateway.config import GatewayConfig
from gateway.pii.stage import PIIStage


def process_age_s() -> float:
    """Seconds since this process started (the kernel's start time, so the interpreter's own
    start-up and every import count)."""
    ticks = os.sysconf("SC_CLK_TCK")
    # Field 22 of /proc/self/stat, counted after the parenthesised command name.
    started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return max(0.0, uptime - started)


def rss_mib() -> float:
    """This process's resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ready_line(engines_s: float = 0.0) -> str:
    """How long the process took to listen (of which ``engines_s`` waiting for its engines
    and remote ones' attestation) and its resident memory (engines are processes of their
    own)."""
    waited = f" ({engines_s:.2f} s of it waiting for engines)" if engines_s >= 0.01 else ""
    return (
        f"  ready        {process_age_s():.2f} s after the process started{waited}, "
        f"{rss_mib():.0f} MiB resident (engines apart)"
    )


def startup_summary(
    config: GatewayConfig,
    config_path: Path,
    identity: TLSIdentity | None,
    summaries: Mapping[str, Sequence[Callable[[], str]]],
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
    for model in config.models:
        policy = pii.policy(model.name)
        lines.append(
            f"  model        {model.name}, pii {policy.mode} (policy {policy.digest[:16]})"
            + (f", fallback {model.fallback}" if model.fallback else "")
        )
        if model.pii.mode == "off" and model.leaves_guest:
            lines.append("    WARNING: raw PII may leave this guest on this route (allow_raw_pii)")
        for line in summaries.get(model.name, ()):
            lines.append(f"    {line()}")
    if identity is not None:
        lines.append(
            f"  try          curl --cacert {identity.cert_path} -H 'Authorization: Bearer <key>' "
            f"{scheme}://{listener.host}:{listener.port}/v1/models"
        )
    return "\n".join(lines)

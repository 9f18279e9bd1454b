"""Wire the engine together from its settings and run it under uvicorn."""

from __future__ import annotations

import contextlib
import logging
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from enclave_backend.chat_template import CHATML_TEMPLATE, ChatTemplate
from enclave_backend.completions import ChatCompletions, shareable_prefixes
from enclave_backend.http_app import EngineApp
from enclave_backend.legacy_completions import LegacyCompletions
from enclave_backend.llama_runtime import LlamaLoadError, LlamaRuntime, RuntimeOptions
from enclave_backend.model_file import ModelFileError, packaged_model_path, sha256_file
from enclave_backend.private_socket import SocketPathError, bind_private_socket, peer_checked
from enclave_backend.process_hardening import disable_core_dumps, log_exceptions_without_messages
from enclave_backend.prompt_tokens import prompt_tokenizer
from enclave_backend.remote_face import RemoteFace, RemoteFaceError
from enclave_backend.requantize import requantize
from enclave_backend.scheduler import SlotScheduler
from enclave_backend.sealed_weights import SealedModelError
from enclave_backend.settings import EngineSettings
from enclave_backend.weights import KeyFetch, Weights, resolve_weights

log = logging.getLogger("enclave_backend")


@dataclass
class LoadedEngine:
    runtime: LlamaRuntime
    scheduler: SlotScheduler
    completions: ChatCompletions
    legacy_completions: LegacyCompletions
    weights: Weights

    def close(self) -> None:
        """Free the model, then its in-memory plaintext (a sealed model's memfd)."""
        self.runtime.close()
        self.weights.close()


def load_engine(settings: EngineSettings, key: KeyFetch | None = None) -> LoadedEngine:
    """Resolve, convert and load the model; raises ModelFileError, SealedModelError or
    LlamaLoadError."""
    if settings.sealed_model is not None and settings.requantize != "none":
        # The converted copy is cached on disk: plaintext-derived weights outside the guest.
        raise SealedModelError("--requantize cannot be used with a sealed model")
    source = resolve_weights(
        settings, lambda: packaged_model_path(settings.model_package, settings.model_file), key
    )
    weights = source
    if settings.requantize != "none":
        converted = requantize(
            source.path,
            source.sha256,
            settings.requantize,
            settings.cache_dir,
            threads=settings.threads,
        )
        weights = Weights(converted, sha256_file(converted), source.name)
    try:
        return _load_runtime(settings, source, weights)
    except BaseException:
        weights.close()
        raise


def _load_runtime(settings: EngineSettings, source: Weights, weights: Weights) -> LoadedEngine:
    runtime = LlamaRuntime(
        RuntimeOptions(
            model_path=weights.path,
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
        model_name=settings.model_name or source.name,
        fingerprint=f"fp_{weights.sha256[:12]}",
        weights_sha256=weights.sha256,
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
    return LoadedEngine(runtime, scheduler, completions, legacy_completions, weights)


def serve(settings: EngineSettings, key: KeyFetch | None = None) -> int:
    """Load and serve; ``key`` is a sealed model's key fetch, already under way."""
    started = time.monotonic()
    disable_core_dumps()
    log_exceptions_without_messages()
    if settings.embedding:
        from enclave_backend.embedding_server import serve_embeddings

        return serve_embeddings(settings, key)
    try:
        engine = load_engine(settings, key)
    except (ModelFileError, SealedModelError, LlamaLoadError) as exc:
        print(f"enclave-backend: cannot start: {exc}", file=sys.stderr)
        return 2

    def announce() -> None:
        print(
            f"enclave-backend ready: model={engine.completions.model_name} "
            f"{engine.weights.describe()} "
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
            engine.close()
            return 2
    app = EngineApp(
        engine.completions,
        engine.scheduler,
        legacy_completions=engine.legacy_completions,
        on_ready=announce,
        attestation=remote.evidence_document if remote else None,
        sealed=engine.weights.health()["sealed"],
    ).build()
    context = remote.identity.context if remote else None
    return run_app(app, settings, context, engine.close)


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

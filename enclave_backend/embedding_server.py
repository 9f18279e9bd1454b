"""An engine process that serves an embedding model: ``/v1/embeddings``, ``/v1/models``,
``/health`` (the shape the gateway's supervisor reads), nothing else.

One GGUF per engine process: a chat engine and an embedding engine are two processes, so
neither model's work waits on the other's threads. Started with ``--embedding``; the model is
``--model`` (an embedding GGUF) or the packaged default (all-MiniLM-L6-v2, built once from
its PyPI package by ``python -m enclave_backend.embedding_model``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confidential_common.errors import APIError
from enclave_backend.embedding_engine import EmbeddingEngine
from enclave_backend.embedding_model import DEFAULT_EMBEDDING_NAME, packaged_embedding_gguf
from enclave_backend.embedding_runtime import EmbeddingOptions
from enclave_backend.embeddings import Embeddings, embeddings_endpoint
from enclave_backend.llama_runtime import LlamaLoadError
from enclave_backend.model_file import ModelFileError
from enclave_backend.sealed_weights import SealedModelError
from enclave_backend.weights import KeyFetch, Weights, resolve_weights

if TYPE_CHECKING:
    from enclave_backend.settings import EngineSettings


def load_embeddings(
    settings: EngineSettings, key: KeyFetch | None = None
) -> tuple[Embeddings, EmbeddingEngine, Weights]:
    """Resolve (building the packaged GGUF if needed) and load; ModelFileError,
    SealedModelError or LlamaLoadError."""
    weights = resolve_weights(settings, lambda: packaged_embedding_gguf(settings.cache_dir), key)
    default_name = DEFAULT_EMBEDDING_NAME
    if settings.model_path is not None or settings.sealed_model is not None:
        default_name = weights.name
    try:
        engine = EmbeddingEngine.load(
            EmbeddingOptions(
                model_path=weights.path,
                n_threads=settings.threads,
                batch_tokens=settings.embedding_batch_tokens,
            )
        )
    except BaseException:
        weights.close()
        raise
    name = settings.model_name or default_name
    return Embeddings(engine, model_name=name, weights_sha256=weights.sha256), engine, weights


def embedding_app(
    embeddings: Embeddings,
    engine: EmbeddingEngine,
    on_ready: Callable[[], None],
    sealed: dict[str, str] | None = None,
) -> Starlette:
    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        engine.start()
        on_ready()
        try:
            yield
        finally:
            engine.close()

    async def health(_: Request) -> Response:
        alive = embeddings.alive
        stats: dict[str, Any] = embeddings.health()
        return JSONResponse(
            status_code=200 if alive else 503,
            content={
                "status": "ok" if alive else "embedding worker stopped",
                "model": embeddings.model_name,
                "weights_sha256": embeddings.weights_sha256,
                "sealed": sealed,
                # The supervisor's view: one worker, busy while inputs wait.
                "slots": {"total": 1, "busy": int(stats["inputs_waiting"] > 0), "free": 1},
                "queue": {"depth": stats["inputs_waiting"]},
                "embeddings": stats,
            },
        )

    async def models(_: Request) -> Response:
        model = {
            "id": embeddings.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "enclave-backend",
        }
        return JSONResponse({"object": "list", "data": [model]})

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = (
            "Unknown route. This embedding engine serves /v1/embeddings, /v1/models and /health."
            if exc.status_code == 404
            else "Method not allowed for this route."
        )
        error = APIError(exc.status_code, message)
        return JSONResponse(error.body(), status_code=exc.status_code)

    return Starlette(
        routes=[
            Route("/v1/embeddings", embeddings_endpoint(embeddings), methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={APIError: api_error, HTTPException: http_error},
        lifespan=lifespan,
    )


def serve_embeddings(settings: EngineSettings, key: KeyFetch | None = None) -> int:
    from enclave_backend.server import run_app

    started = time.monotonic()
    try:
        embeddings, engine, weights = load_embeddings(settings, key)
    except (ModelFileError, SealedModelError, LlamaLoadError) as exc:
        print(f"enclave-backend: cannot start: {exc}", file=sys.stderr)
        return 2

    def announce() -> None:
        print(
            f"enclave-backend ready: embedding model={embeddings.model_name} "
            f"{weights.describe()} dims={embeddings.dimensions} "
            f"threads={settings.threads} on {settings.listen_address()} "
            f"({time.monotonic() - started:.1f}s)",
            file=sys.stderr,
            flush=True,
        )

    def close() -> None:
        engine.close()
        weights.close()

    app = embedding_app(embeddings, engine, announce, weights.health()["sealed"])
    return run_app(app, settings, None, close)

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
from enclave_backend.model_file import ModelFileError, check_gguf, sha256_file

if TYPE_CHECKING:
    from enclave_backend.server import EngineSettings


def load_embeddings(settings: EngineSettings) -> tuple[Embeddings, EmbeddingEngine]:
    """Resolve (building the packaged GGUF if needed) and load; ModelFileError/LlamaLoadError."""
    if settings.model_path is not None:
        path = check_gguf(settings.model_path.expanduser().resolve())
    else:
        path = packaged_embedding_gguf(settings.cache_dir)
    name = settings.model_name or (path.stem if settings.model_path else DEFAULT_EMBEDDING_NAME)
    engine = EmbeddingEngine.load(
        EmbeddingOptions(
            model_path=path,
            n_threads=settings.threads,
            batch_tokens=settings.embedding_batch_tokens,
        )
    )
    return Embeddings(engine, model_name=name, weights_sha256=sha256_file(path)), engine


def embedding_app(
    embeddings: Embeddings, engine: EmbeddingEngine, on_ready: Callable[[], None]
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


def serve_embeddings(settings: EngineSettings) -> int:
    from enclave_backend.server import run_app

    started = time.monotonic()
    try:
        embeddings, engine = load_embeddings(settings)
    except (ModelFileError, LlamaLoadError) as exc:
        print(f"enclave-backend: cannot start: {exc}", file=sys.stderr)
        return 2

    def announce() -> None:
        print(
            f"enclave-backend ready: embedding model={embeddings.model_name} "
            f"sha256={embeddings.weights_sha256[:16]}... dims={embeddings.dimensions} "
            f"threads={settings.threads} on {settings.listen_address()} "
            f"({time.monotonic() - started:.1f}s)",
            file=sys.stderr,
            flush=True,
        )

    return run_app(embedding_app(embeddings, engine, announce), settings, None, engine.close)

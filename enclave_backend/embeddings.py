"""``/v1/embeddings``: from a validated request to token lists, and from vectors to OpenAI's
response.

``Embeddings`` checks what needs the model (the model name, token ids inside its vocabulary,
inputs within its context, ``dimensions``), queues the inputs on the ``EmbeddingEngine`` and
builds ``{"object": "list", "data": [...], "model", "usage"}``. Vectors are L2-normalized as
OpenAI's are; ``dimensions`` below the native size is honoured only for a Matryoshka-trained
model (truncate, then renormalize). ``embeddings_endpoint`` is its Starlette handler.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from confidential_common.errors import APIError, bad_request, from_validation_error
from enclave_backend.capacity import overloaded, stopping
from enclave_backend.embedding_engine import (
    EmbeddingEngine,
    EmbeddingEngineStopped,
    EmbeddingFailed,
    EmbeddingQueueFull,
)
from enclave_backend.embedding_protocol import EmbeddingRequest
from enclave_backend.embedding_runtime import Vector
from enclave_backend.http_app import (
    DEFAULT_MAX_BODY_BYTES,
    read_body,
    tenant_of,
    unless_disconnected,
)

# Up to this many inputs, tokenizing and formatting take less than a hop to a worker thread.
INLINE_INPUTS = 16


class Embeddings:
    """The engine's behaviour behind ``/v1/embeddings``; knows nothing of HTTP."""

    def __init__(
        self,
        engine: EmbeddingEngine,
        *,
        model_name: str,
        weights_sha256: str,
        matryoshka: bool = False,
    ) -> None:
        self._engine = engine
        self.model_name = model_name
        self.weights_sha256 = weights_sha256
        self.matryoshka = matryoshka

    @property
    def dimensions(self) -> int:
        return self._engine.model.dimensions

    @property
    def alive(self) -> bool:
        return self._engine.alive

    def health(self) -> dict[str, Any]:
        """What ``/health`` reports of the embedding model (counts only, never inputs)."""
        model, stats = self._engine.model, self._engine.stats()
        return {
            "model": self.model_name,
            "weights_sha256": self.weights_sha256,
            "dimensions": model.dimensions,
            "pooling": model.pooling,
            "max_input_tokens": model.max_input_tokens,
            "batches": stats.batches,
            "inputs_embedded": stats.inputs_embedded,
            "inputs_waiting": stats.inputs_waiting,
            "requests_cancelled": stats.jobs_cancelled,
        }

    def token_lists(self, request: EmbeddingRequest) -> list[list[int]]:
        """Each input's tokens, markers included; 400 for what this model cannot take."""
        model = self._engine.model
        inputs = request.inputs()
        if isinstance(inputs[0], str):
            lists = [model.tokenize(text) for text in inputs if isinstance(text, str)]
        else:
            lists = []
            for index, ids in enumerate(inputs):
                assert not isinstance(ids, str)
                if any(not 0 <= token < model.n_vocab for token in ids):
                    raise bad_request(
                        f"Invalid value for 'input': input {index} has a token id outside this "
                        f"model's vocabulary (0 to {model.n_vocab - 1}).",
                        param="input",
                        code="invalid_value",
                    )
                lists.append(model.with_markers(ids))
        limit = model.max_input_tokens
        for index, tokens in enumerate(lists):
            if len(tokens) > limit:
                raise bad_request(
                    f"Input {index} is {len(tokens)} tokens long; this model takes at most "
                    f"{limit} tokens per input. Shorten or split the input.",
                    param="input",
                    code="context_length_exceeded",
                )
        return lists

    def _check(self, request: EmbeddingRequest) -> int:
        """The vector size to return."""
        if request.model != self.model_name:
            raise APIError(
                404,
                f"The model '{request.model}' does not exist; this engine embeds with "
                f"'{self.model_name}'.",
                param="model",
                code="model_not_found",
            )
        native = self.dimensions
        wanted = request.dimensions
        if wanted is None or wanted == native:
            return native
        if not self.matryoshka:
            raise bad_request(
                f"The parameter 'dimensions' is not supported by '{self.model_name}': its "
                f"vectors have {native} dimensions and it was not trained to be truncated. "
                f"Omit 'dimensions' or set it to {native}.",
                param="dimensions",
                code="unsupported_parameter",
            )
        if wanted > native:
            raise bad_request(
                f"Invalid value for 'dimensions': '{self.model_name}' has {native} dimensions; "
                f"ask for {native} or fewer.",
                param="dimensions",
                code="invalid_value",
            )
        return wanted

    async def create(self, request: EmbeddingRequest, *, tenant: str = "") -> dict[str, Any]:
        size = self._check(request)
        try:
            self._engine.check_running()  # before tokenizing: a stopped engine freed its model
            # Thousands of inputs take a while to tokenize and format: off the event loop,
            # which other requests' streams share; a few are quicker than the hop.
            few = len(request.inputs()) <= INLINE_INPUTS
            lists = (
                self.token_lists(request)
                if few
                else await asyncio.to_thread(self.token_lists, request)
            )
            vectors = await self._engine.embed(lists, tenant=tenant)
        except EmbeddingQueueFull as exc:
            raise overloaded(str(exc), "embedding engine") from None
        except EmbeddingEngineStopped:
            raise stopping() from None
        except EmbeddingFailed as exc:
            raise APIError(
                500, f"The engine could not embed the input: {exc}.", type="server_error"
            ) from None
        tokens = sum(map(len, lists))
        if few:
            return self._payload(vectors, size, request.encoding_format, tokens)
        payload = self._payload
        return await asyncio.to_thread(payload, vectors, size, request.encoding_format, tokens)

    def _payload(
        self, vectors: list[Vector], size: int, encoding_format: str, tokens: int
    ) -> dict[str, Any]:
        encode = _base64 if encoding_format == "base64" else _floats
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": encode(normalized(v, size))}
                for index, v in enumerate(vectors)
            ],
            "model": self.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def normalized(vector: Vector, size: int) -> Vector:
    """The first ``size`` components, scaled to unit length (a zero vector stays zero)."""
    head = vector[:size]
    norm = float(np.linalg.norm(head))
    return head / np.float32(norm) if norm > 0 else head


def _floats(vector: Vector) -> list[float]:
    # Each float32 widened exactly to a float64: it round-trips, and costs no Python-level
    # formatting per component (that was most of a large request's time outside decoding).
    return vector.astype(np.float64).tolist()  # type: ignore[no-any-return]


def _base64(vector: Vector) -> str:
    """OpenAI's base64 encoding: the little-endian float32 bytes of the vector."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")


def parse_embedding_request(body: bytes) -> EmbeddingRequest:
    try:
        return EmbeddingRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def embeddings_endpoint(
    embeddings: Embeddings, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette handler of ``POST /v1/embeddings``. A client that disconnects before its
    vectors are ready cancels the inputs not yet decoded (499, nothing sent)."""

    async def endpoint(request: Request) -> Response:
        tenant, _weight = tenant_of(request)
        parsed = parse_embedding_request(await read_body(request, max_body_bytes))
        result = await unless_disconnected(request, embeddings.create(parsed, tenant=tenant))
        if result is None:
            return Response(status_code=499)
        if len(result["data"]) <= INLINE_INPUTS:
            return JSONResponse(result)
        return await asyncio.to_thread(JSONResponse, result)  # megabytes for 2048 vectors

    return endpoint

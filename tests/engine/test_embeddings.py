"""/v1/embeddings in the engine, in-process, with the real default embedding model.

The model is all-MiniLM-L6-v2 converted from its PyPI package into a GGUF in a temporary
cache, so these tests also cover the install-time conversion and its locator.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from confidential_common.errors import APIError
from enclave_backend.bert_gguf import read_safetensors
from enclave_backend.embedding_engine import EmbeddingEngine
from enclave_backend.embedding_model import (
    DEFAULT_EMBEDDING_NAME,
    packaged_embedding_gguf,
    packaged_weights_dir,
)
from enclave_backend.embedding_protocol import MAX_INPUTS, EmbeddingRequest
from enclave_backend.embedding_runtime import EmbeddingOptions
from enclave_backend.embeddings import Embeddings, embeddings_endpoint
from enclave_backend.http_app import error_response
from enclave_backend.model_file import sha256_file

MODEL = DEFAULT_EMBEDDING_NAME
NATIVE = 384
TEXTS = [
    "The cat sat on the mat.",
    "A kitten was resting on the rug.",
    "Quarterly revenue grew by twelve percent.",
    "How do I reset my password?",
    "Photosynthesis turns light into chemical energy.",
    "Ünïcödé naïve café — 東京 🚀",
]


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return packaged_embedding_gguf(tmp_path_factory.mktemp("embedding-cache"))


@pytest.fixture(scope="module")
def engine(gguf_path: Path) -> Iterator[EmbeddingEngine]:
    engine = EmbeddingEngine.load(EmbeddingOptions(model_path=gguf_path, n_threads=1))
    engine.start()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def service(engine: EmbeddingEngine, gguf_path: Path) -> Embeddings:
    return Embeddings(engine, model_name=MODEL, weights_sha256=sha256_file(gguf_path))


@pytest.fixture(scope="module")
def client(service: Embeddings) -> Iterator[TestClient]:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return error_response(exc)

    app = Starlette(
        routes=[Route("/v1/embeddings", embeddings_endpoint(service), methods=["POST"])],
        exception_handlers={APIError: api_error},
    )
    with TestClient(app) as test_client:
        yield test_client


def create(service: Embeddings, **body: Any) -> dict[str, Any]:
    request = EmbeddingRequest.model_validate({"model": MODEL, **body})
    return asyncio.run(service.create(request))


def vectors(response: dict[str, Any]) -> np.ndarray:
    return np.array([item["embedding"] for item in response["data"]], dtype=np.float32)


def error_of(client: TestClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = client.post("/v1/embeddings", json=body)
    return response.status_code, response.json()["error"]


# -- the model file ---------------------------------------------------------------------------
def test_packaged_model_is_converted_once_and_then_found_by_its_hash(gguf_path: Path) -> None:
    assert gguf_path.name.startswith("all-MiniLM-L6-v2.53aa51172d142c89.f16.")
    before = gguf_path.stat().st_mtime_ns
    assert packaged_embedding_gguf(gguf_path.parent) == gguf_path
    assert gguf_path.stat().st_mtime_ns == before


def test_model_facts_come_from_the_gguf(service: Embeddings, gguf_path: Path) -> None:
    health = service.health()
    assert health["dimensions"] == NATIVE
    assert health["pooling"] == "mean"  # sentence-transformers' Pooling module, kept
    assert health["max_input_tokens"] == 512
    assert health["weights_sha256"] == sha256_file(gguf_path)


def test_tokenization_matches_the_models_own_wordpiece_tokenizer(engine: EmbeddingEngine) -> None:
    # Ids from the Hugging Face tokenizer.json shipped with the weights.
    password = [101, 2129, 2079, 1045, 25141, 2026, 20786, 1029, 102]
    accents = [101, 27260, 15743, 7668, 1517, 1879, 1755, 100, 102]  # 100: [UNK] for the emoji
    assert engine.model.tokenize("How do I reset my password?") == password
    assert engine.model.tokenize("Ünïcödé naïve café — 東京 🚀") == accents


def _reference_bert(weights: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """all-MiniLM-L6-v2 in float64 numpy, straight from the safetensors: mean-pooled."""
    from math import erf, sqrt

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        scaled = (x - mean) / np.sqrt(var + 1e-12)
        return scaled * weights[f"{name}.weight"] + weights[f"{name}.bias"]

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]

    n, heads = len(ids), 12
    x = weights["embeddings.word_embeddings.weight"][ids]
    x = x + weights["embeddings.position_embeddings.weight"][:n]
    x = norm(x + weights["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    for layer in range(6):
        p = f"encoder.layer.{layer}"
        q, k, v = (
            dense(x, f"{p}.attention.self.{m}").reshape(n, heads, -1).transpose(1, 0, 2)
            for m in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / sqrt(q.shape[-1])
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (scores / scores.sum(-1, keepdims=True)) @ v
        attended = attended.transpose(1, 0, 2).reshape(n, -1)
        attended = dense(attended, f"{p}.attention.output.dense")
        x = norm(x + attended, f"{p}.attention.output.LayerNorm")
        hidden = dense(x, f"{p}.intermediate.dense")
        hidden = 0.5 * hidden * (1 + np.vectorize(erf)(hidden / sqrt(2)))
        x = norm(x + dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def test_converted_model_matches_a_reference_forward_pass_of_the_weights(
    service: Embeddings, engine: EmbeddingEngine
) -> None:
    source = packaged_weights_dir()
    weights = {
        name: np.asarray(array, dtype=np.float64)
        for name, array in read_safetensors(source / "model.safetensors")
        if array.dtype != np.int64
    }
    for text in (TEXTS[0], TEXTS[3], TEXTS[5]):
        expected = _reference_bert(weights, engine.model.tokenize(text))
        got = vectors(create(service, input=text))[0]
        assert float(got @ expected) > 0.9999  # F16 weights against float64


# -- vectors --------------------------------------------------------------------------------
def test_response_has_openai_shape_and_counts_tokens(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"model": MODEL, "input": TEXTS[:2]})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == MODEL
    assert [(d["object"], d["index"]) for d in body["data"]] == [
        ("embedding", 0),
        ("embedding", 1),
    ]
    assert all(len(d["embedding"]) == NATIVE for d in body["data"])
    # [CLS] + 7 word pieces + [SEP], [CLS] + 8 + [SEP]
    assert body["usage"] == {"prompt_tokens": 9 + 10, "total_tokens": 9 + 10}


def test_vectors_are_unit_length(service: Embeddings) -> None:
    norms = np.linalg.norm(vectors(create(service, input=TEXTS)), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones(service: Embeddings) -> None:
    cat, kitten, revenue = vectors(create(service, input=TEXTS[:3]))
    assert float(cat @ kitten) > float(cat @ revenue) + 0.3


def test_batching_many_inputs_gives_the_vectors_of_one_at_a_time(service: Embeddings) -> None:
    texts = [f"{text} (variant {i})" for i in range(8) for text in TEXTS]
    batched = vectors(create(service, input=texts))
    alone = np.stack([vectors(create(service, input=text))[0] for text in texts[:12]])
    # F16 kernels round differently for different batch shapes: equal to float tolerance.
    assert np.max(np.abs(batched[:12] - alone)) < 1e-3
    assert np.min(np.sum(batched[:12] * alone, axis=1)) > 0.99999


def test_concurrent_requests_share_decodes(service: Embeddings, engine: EmbeddingEngine) -> None:
    async def many() -> list[dict[str, Any]]:
        requests = [EmbeddingRequest(model=MODEL, input=f"request {i}") for i in range(16)]
        return await asyncio.gather(*(service.create(r) for r in requests))

    before = engine.stats().batches
    results = asyncio.run(many())
    assert len(results) == 16
    assert engine.stats().batches - before <= 4  # 16 requests, not 16 decodes


def test_token_ids_embed_like_the_text_they_spell(
    service: Embeddings, engine: EmbeddingEngine
) -> None:
    text = TEXTS[3]
    with_markers = engine.model.tokenize(text)
    bare = with_markers[1:-1]  # without [CLS] and [SEP]: they are added back
    from_text = vectors(create(service, input=text))[0]
    from_bare = vectors(create(service, input=bare))[0]
    from_marked = vectors(create(service, input=[with_markers]))[0]
    assert np.allclose(from_text, from_bare, atol=1e-6)
    assert np.allclose(from_text, from_marked, atol=1e-6)
    assert create(service, input=bare)["usage"]["prompt_tokens"] == len(with_markers)


def test_base64_is_little_endian_float32_of_the_float_vector(service: Embeddings) -> None:
    floats = vectors(create(service, input=TEXTS[0]))[0]
    encoded = create(service, input=TEXTS[0], encoding_format="base64")["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert decoded.shape == (NATIVE,)
    assert np.array_equal(decoded, floats)  # the JSON floats round-trip float32 exactly


def test_native_dimensions_are_accepted(service: Embeddings) -> None:
    assert vectors(create(service, input="x", dimensions=NATIVE)).shape == (1, NATIVE)


def test_matryoshka_model_truncates_and_renormalizes(
    engine: EmbeddingEngine, service: Embeddings
) -> None:
    matryoshka = Embeddings(engine, model_name=MODEL, weights_sha256="", matryoshka=True)
    full = vectors(create(service, input=TEXTS[4]))[0]
    short = vectors(create(matryoshka, input=TEXTS[4], dimensions=64))[0]
    assert short.shape == (64,)
    assert np.allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)


# -- scheduling -------------------------------------------------------------------------------
def test_a_small_request_of_another_tenant_overtakes_a_large_one(
    service: Embeddings, engine: EmbeddingEngine
) -> None:
    async def race() -> tuple[int, int]:
        large = EmbeddingRequest(model=MODEL, input=[f"bulk text {i}" for i in range(MAX_INPUTS)])
        bulk = asyncio.create_task(service.create(large, tenant="a" * 32))
        started = engine.stats().batches
        while engine.stats().batches == started:  # the bulk request is being decoded
            await asyncio.sleep(0.005)
        await service.create(EmbeddingRequest(model=MODEL, input="quick"), tenant="b" * 32)
        waiting = engine.stats().inputs_waiting
        bulk.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bulk
        return waiting, engine.stats().batches - started

    waiting, batches = asyncio.run(race())
    assert waiting > MAX_INPUTS // 2  # most of the bulk was still waiting...
    assert batches <= 4  # ...when the quick request was answered, within a batch or two


def test_cancelled_request_is_not_computed(engine: EmbeddingEngine) -> None:
    inputs = [engine.model.tokenize(f"abandoned input number {i}") for i in range(MAX_INPUTS)]

    async def abandon() -> None:
        task = asyncio.create_task(engine.embed(inputs))
        deadline = asyncio.get_running_loop().time() + 60
        while engine.stats().inputs_waiting == 0 and not task.done():
            await asyncio.sleep(0.01)
        before = engine.stats().batches
        while engine.stats().batches == before and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    embedded = engine.stats().inputs_embedded
    asyncio.run(abandon())
    # Let the worker finish the batch in flight, then check it dropped the rest.
    for _ in range(200):
        if engine.stats().inputs_waiting == 0:
            break
        asyncio.run(asyncio.sleep(0.05))
    stats = engine.stats()
    assert stats.inputs_waiting == 0
    assert stats.jobs_cancelled >= 1
    assert stats.inputs_embedded - embedded < MAX_INPUTS // 2


def test_client_that_disconnects_cancels_the_inputs_not_yet_decoded(
    service: Embeddings, engine: EmbeddingEngine
) -> None:
    route = Route("/v1/embeddings", embeddings_endpoint(service), methods=["POST"])
    app = Starlette(routes=[route])
    texts = [f"a client leaves before input {i}" for i in range(MAX_INPUTS)]
    body = json.dumps({"model": MODEL, "input": texts}).encode()
    sent: list[dict[str, Any]] = []
    before = engine.stats()

    async def exchange() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            while engine.stats().batches == before.batches:  # leave once decoding started
                await asyncio.sleep(0.005)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "path": "/v1/embeddings",
            "raw_path": b"/v1/embeddings",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
            "scheme": "http",
            "server": ("engine", 80),
        }
        await app(scope, receive, send)

    asyncio.run(exchange())
    for _ in range(200):  # the batch in flight finishes; the rest is dropped
        if engine.stats().inputs_waiting == 0:
            break
        time.sleep(0.05)
    after = engine.stats()
    assert sent[0]["status"] == 499
    assert after.inputs_waiting == 0
    assert after.jobs_cancelled > before.jobs_cancelled
    assert after.inputs_embedded - before.inputs_embedded < MAX_INPUTS // 2


def test_engine_at_capacity_or_stopped_answers_503(gguf_path: Path) -> None:
    small = EmbeddingEngine.load(
        EmbeddingOptions(model_path=gguf_path, n_threads=1, max_waiting_inputs=64)
    )
    service = Embeddings(small, model_name=MODEL, weights_sha256="")
    small.start()

    async def overflow() -> APIError:
        bulk = asyncio.create_task(small.embed([[101, 2000 + i, 102] for i in range(MAX_INPUTS)]))
        await asyncio.sleep(0)  # queued
        try:
            with pytest.raises(APIError) as caught:
                await service.create(EmbeddingRequest(model=MODEL, input="one more"))
            return caught.value
        finally:
            bulk.cancel()

    try:
        full = asyncio.run(overflow())
        assert (full.status, full.code) == (503, "engine_overloaded")
        assert full.headers["Retry-After"] == "1"
    finally:
        small.close()
    with pytest.raises(APIError) as stopped:
        create(service, input="after the end")
    assert (stopped.value.status, stopped.value.code) == (503, "engine_stopping")


# -- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input": ""}, "must not be empty"),
        ({"input": []}, "must not be empty"),
        ({"input": ["ok", ""]}, "no input in the list may be empty"),
        ({"input": [[1, 2], []]}, "no input in the list may be empty"),
        ({"input": ["x"] * (MAX_INPUTS + 1)}, f"at most {MAX_INPUTS} inputs"),
        ({"input": [True, False]}, "input"),
        ({"input": "x", "encoding_format": "float16"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_malformed_input_is_a_400_naming_the_parameter(
    client: TestClient, body: dict[str, Any], needle: str
) -> None:
    status, error = error_of(client, {"model": MODEL, **body})
    assert status == 400
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]


def test_unknown_parameter_is_refused(client: TestClient) -> None:
    status, error = error_of(client, {"model": MODEL, "input": "x", "truncate": True})
    assert status == 400
    assert error["param"] == "truncate"


def test_input_longer_than_the_context_says_the_limit(client: TestClient) -> None:
    status, error = error_of(client, {"model": MODEL, "input": ["short", "word " * 600]})
    assert status == 400
    assert error["code"] == "context_length_exceeded"
    assert "Input 1 is 602 tokens long" in error["message"]
    assert "at most 512 tokens" in error["message"]


@pytest.mark.parametrize("token", [-1, 30522, 2**40])
def test_token_ids_outside_the_vocabulary_are_refused(client: TestClient, token: int) -> None:
    status, error = error_of(client, {"model": MODEL, "input": [[101, 2000, 102], [7, token]]})
    assert status == 400
    assert error["param"] == "input"
    assert (
        "input 1 has a token id outside this model's vocabulary (0 to 30521)" in (error["message"])
    )


def test_dimensions_other_than_native_are_refused_for_a_non_matryoshka_model(
    client: TestClient,
) -> None:
    status, error = error_of(client, {"model": MODEL, "input": "x", "dimensions": 128})
    assert status == 400
    assert error["param"] == "dimensions"
    assert error["code"] == "unsupported_parameter"
    assert f"its vectors have {NATIVE} dimensions" in error["message"]


def test_dimensions_above_native_are_refused_for_a_matryoshka_model(
    engine: EmbeddingEngine,
) -> None:
    matryoshka = Embeddings(engine, model_name=MODEL, weights_sha256="", matryoshka=True)
    with pytest.raises(APIError) as caught:
        create(matryoshka, input="x", dimensions=NATIVE + 1)
    assert caught.value.status == 400
    assert f"ask for {NATIVE} or fewer" in caught.value.message


def test_unknown_model_is_a_404(client: TestClient) -> None:
    status, error = error_of(client, {"model": "text-embedding-3-small", "input": "x"})
    assert status == 404
    assert error["code"] == "model_not_found"

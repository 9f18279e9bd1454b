"""``POST /v1/embeddings`` through the TLS gateway, from openai-python and from LangChain's
``OpenAIEmbeddings`` feeding an in-memory retriever, against the embedding model that
config/gateway.yaml serves."""

from __future__ import annotations

import base64
import math
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import OpenAIEmbeddings

from tests.clients.conftest import (
    EMBED_MODEL,
    KEY,
    MODEL,
    RecordingTransport,
    raises_verification_error,
    tampered_attested_sdk,
    verified_claims,
)
from tests.gateway.conftest import RunningGateway

TEXTS = ["The cat sleeps on the sofa.", "Interest rates rose again this quarter.", "Hello"]
DOCUMENTS = {
    "cats": "The cat curled up on the windowsill, purring in the warm afternoon sun.",
    "plants": "Photosynthesis lets green plants turn sunlight, water and CO2 into sugar.",
    "markets": "Stock prices fell sharply after the central bank raised interest rates.",
    "football": "The football team won the championship with a goal in the final minute.",
    "baking": "To bake bread, mix flour, water, yeast and salt, then let the dough rise.",
    "volcano": "The volcano erupted, sending ash and glowing lava down the mountain slopes.",
}
QUERIES = {
    "How do leaves make food from light?": "plants",
    "What happened to shares when borrowing costs went up?": "markets",
    "a recipe for a homemade loaf": "baking",
    "Which side scored the late winner in the final?": "football",
    "a kitten napping by the window": "cats",
    "molten rock pouring from an eruption": "volcano",
}


def sdk(served: RunningGateway) -> tuple[openai.OpenAI, RecordingTransport]:
    transport = RecordingTransport(served.tls_context())
    client = openai.OpenAI(
        base_url=served.url + "/v1",
        api_key=KEY,
        max_retries=0,
        http_client=httpx.Client(transport=transport, timeout=120),
    )
    return client, transport


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_float_embeddings_are_one_unit_vector_per_input_in_order(
    served: RunningGateway, served_evidence: Any
) -> None:
    client, transport = sdk(served)
    result = client.embeddings.create(model=EMBED_MODEL, input=TEXTS, encoding_format="float")
    assert result.object == "list" and result.model == EMBED_MODEL
    assert [item.index for item in result.data] == list(range(len(TEXTS)))
    dims = {len(item.embedding) for item in result.data}
    assert len(dims) == 1 and dims.pop() >= 64
    for item in result.data:
        assert item.object == "embedding"
        assert all(isinstance(x, float) for x in item.embedding)
        assert abs(norm(item.embedding) - 1.0) < 1e-3
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens
    request, response, received = transport.exchanges[-1]
    claims = verified_claims(
        served_evidence, request, bytes(received), response.headers["x-attestation-token"]
    )
    assert claims["model"]["name"] == EMBED_MODEL and claims["model"]["weights_sha256"]


def test_base64_is_what_the_sdk_asks_for_by_default_and_decodes_to_the_float_vectors(
    served: RunningGateway,
) -> None:
    client, transport = sdk(served)
    floats = client.embeddings.create(model=EMBED_MODEL, input=TEXTS, encoding_format="float")
    # No encoding_format: openai-python asks for base64 on the wire and decodes it.
    decoded = client.embeddings.create(model=EMBED_MODEL, input=TEXTS)
    sent = transport.exchanges[-1][0].content
    assert b'"encoding_format":"base64"' in sent.replace(b" ", b"")
    for a, b in zip(floats.data, decoded.data, strict=True):
        assert np.allclose(a.embedding, b.embedding, atol=1e-6)
    raw = client.embeddings.with_raw_response.create(
        model=EMBED_MODEL, input="Hello", encoding_format="base64"
    ).http_response.json()
    packed = raw["data"][0]["embedding"]
    assert isinstance(packed, str)
    vector = np.frombuffer(base64.b64decode(packed), dtype="<f4")
    assert len(vector) == len(floats.data[0].embedding)
    assert np.allclose(vector, floats.data[2].embedding, atol=1e-6)


def test_a_single_string_and_its_batch_embed_the_same(served: RunningGateway) -> None:
    client, _ = sdk(served)
    alone = client.embeddings.create(model=EMBED_MODEL, input=TEXTS[0], encoding_format="float")
    batch = client.embeddings.create(model=EMBED_MODEL, input=TEXTS, encoding_format="float")
    assert len(alone.data) == 1
    assert np.allclose(alone.data[0].embedding, batch.data[0].embedding, atol=1e-4)


def test_native_dimensions_are_accepted_and_others_honoured_or_refused_by_name(
    served: RunningGateway,
) -> None:
    client, _ = sdk(served)
    native = len(client.embeddings.create(model=EMBED_MODEL, input="x").data[0].embedding)
    same = client.embeddings.create(model=EMBED_MODEL, input="x", dimensions=native)
    assert len(same.data[0].embedding) == native
    try:
        fewer = client.embeddings.create(model=EMBED_MODEL, input="x", dimensions=native // 2)
    except openai.BadRequestError as error:
        assert isinstance(error.body, dict) and error.body["param"] == "dimensions"
    else:
        vector = fewer.data[0].embedding
        assert len(vector) == native // 2 and abs(norm(vector) - 1.0) < 1e-3


def test_personal_data_is_tokenized_before_it_is_embedded(
    served: RunningGateway, served_evidence: Any
) -> None:
    client, transport = sdk(served)
    client.embeddings.create(
        model=EMBED_MODEL, input="Write to maria.gonzalez@example-health.org today."
    )
    request, response, received = transport.exchanges[-1]
    claims = verified_claims(
        served_evidence, request, bytes(received), response.headers["x-attestation-token"]
    )
    assert claims["pii"]["mode"] == "tokenize"
    assert claims["pii"]["counts"] == {"EMAIL_ADDRESS": 1}


def test_the_chat_model_serves_no_embeddings_and_the_embedding_model_no_chat(
    served: RunningGateway,
) -> None:
    client, _ = sdk(served)
    with pytest.raises(openai.APIStatusError) as chat_model:
        client.embeddings.create(model=MODEL, input="x")
    assert chat_model.value.status_code in {400, 404}
    with pytest.raises(openai.APIStatusError) as embed_model:
        client.chat.completions.create(
            model=EMBED_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    assert embed_model.value.status_code in {400, 404}


def langchain_embeddings(served: RunningGateway) -> OpenAIEmbeddings:
    return OpenAIEmbeddings(
        model=EMBED_MODEL,
        base_url=served.url + "/v1",
        api_key=KEY,  # type: ignore[arg-type]
        max_retries=0,
        check_embedding_ctx_length=False,  # it would send tiktoken ids for an OpenAI model
        http_client=httpx.Client(verify=served.tls_context()),
        http_async_client=httpx.AsyncClient(verify=served.tls_context()),
    )


def test_langchain_openai_embeddings_feed_an_in_memory_retriever(served: RunningGateway) -> None:
    embeddings = langchain_embeddings(served)
    store = InMemoryVectorStore(embeddings)
    store.add_documents(
        [Document(page_content=text, metadata={"topic": t}) for t, text in DOCUMENTS.items()]
    )
    found = {query: store.similarity_search(query, k=1)[0].metadata["topic"] for query in QUERIES}
    assert found == QUERIES
    retriever = store.as_retriever(search_kwargs={"k": 2})
    top = retriever.invoke("volcanic ash over the mountains")
    assert top[0].metadata["topic"] == "volcano" and len(top) == 2


def test_langchain_embed_query_and_documents_agree(served: RunningGateway) -> None:
    embeddings = langchain_embeddings(served)
    [document] = embeddings.embed_documents([DOCUMENTS["cats"]])
    query = embeddings.embed_query(DOCUMENTS["cats"])
    assert len(query) == len(document) and np.allclose(query, document, atol=1e-4)


def test_the_verifying_transport_rejects_tampered_embeddings(served: RunningGateway) -> None:
    client = tampered_attested_sdk(served)
    raises_verification_error(lambda: client.embeddings.create(model=EMBED_MODEL, input="Hi"))

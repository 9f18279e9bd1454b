"""A GGUF model opened for pooled embeddings, through llama-cpp-python's low-level API.

``EmbeddingModel`` owns a llama.cpp model and a context opened with ``embeddings`` on and a
pooling type (the GGUF's own, else the one asked for). ``embed`` decodes many inputs in one
``llama_decode``, one sequence each, and llama.cpp pools every sequence's final hidden states
into one vector (``embd_seq``). Scheduling lives in ``embedding_engine``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np
import numpy.typing as npt

from enclave_backend.decode_batch import DecodeBatch
from enclave_backend.llama_runtime import LlamaLoadError, init_backend
from enclave_backend.model_file import ModelFileError, check_gguf

Vector = npt.NDArray[np.float32]

POOLING_TYPES = {
    "mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
    "cls": llama_cpp.LLAMA_POOLING_TYPE_CLS,
    "last": llama_cpp.LLAMA_POOLING_TYPE_LAST,
}
_POOLING_NAMES = {value: name for name, value in POOLING_TYPES.items()}
# llama.cpp's bound on sequences per context (LLAMA_MAX_SEQ).
MAX_SEQUENCES = 256


@dataclass(frozen=True)
class EmbeddingOptions:
    """How the embedding model is loaded and its batches sized."""

    model_path: Path
    # The longest input (capped by the model's trained context). An encoder must see all of
    # a batch in one ubatch, so the context and the most tokens one decode takes are the
    # larger of this and ``batch_tokens``.
    max_input_tokens: int = 512
    # Tokens one batch aims at. Attention in a batch spans all its tokens (masked per
    # sequence), so its cost grows with the square of the batch, while each decode also pays
    # a fixed cost (thread hand-offs): about 512 tokens is fastest per input on CPUs
    # (bench/embeddings_bench.py). A longer input goes alone.
    batch_tokens: int = 512
    n_seq_max: int = 128
    n_threads: int = 2
    # "model": the GGUF's own pooling, mean where it declares none (a chat model's states).
    pooling: str = "model"
    # Inputs that may wait across all jobs before a new request is refused (503).
    max_waiting_inputs: int = 16384


class EmbeddingModel:
    """One GGUF model and an embeddings context. ``embed`` belongs to the engine's thread;
    ``tokenize`` only reads the vocabulary and may run on any thread."""

    def __init__(self, options: EmbeddingOptions) -> None:
        if options.pooling != "model" and options.pooling not in POOLING_TYPES:
            raise ValueError(f"unknown pooling {options.pooling!r}")
        check_gguf(options.model_path)
        init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        model = llama_cpp.llama_model_load_from_file(str(options.model_path).encode(), params)
        if not model:
            raise ModelFileError(
                f"llama.cpp could not load {options.model_path}: the file is corrupt, "
                "truncated or uses an unsupported architecture"
            )
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))
        self.dimensions = int(llama_cpp.llama_model_n_embd_out(model))
        self.pooling = self._pooling(options.pooling)
        self.n_seq_max = max(1, min(options.n_seq_max, MAX_SEQUENCES))
        # An input must fit one decode and the model's positions.
        self.max_input_tokens = min(options.max_input_tokens, self.n_ctx_train or 1 << 30)
        # A batch may hold more tokens than one input: many short inputs share one decode.
        self.n_batch = max(self.max_input_tokens, options.batch_tokens)
        self.batch_tokens = max(1, options.batch_tokens)

        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.embeddings = True
        ctx_params.pooling_type = POOLING_TYPES[self.pooling]
        ctx_params.n_ctx = self.n_batch
        ctx_params.n_batch = self.n_batch
        ctx_params.n_ubatch = self.n_batch
        ctx_params.n_seq_max = self.n_seq_max
        ctx_params.kv_unified = True  # a causal model's sequences share the batch's cells
        ctx_params.n_threads = options.n_threads
        ctx_params.n_threads_batch = options.n_threads
        ctx_params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, ctx_params)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise LlamaLoadError(
                f"llama.cpp could not create an embeddings context of {self.n_batch} tokens"
            )
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)  # NULL for encoders (BERT)
        self._batch = DecodeBatch(self.n_batch)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.add_eos = bool(llama_cpp.llama_vocab_get_add_eos(self._vocab))
        self.add_sep = bool(llama_cpp.llama_vocab_get_add_sep(self._vocab))
        self.bos = int(llama_cpp.llama_vocab_bos(self._vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self._vocab))
        self.sep = int(llama_cpp.llama_vocab_sep(self._vocab))
        self._closed = False

    def _pooling(self, asked: str) -> str:
        if asked != "model":
            return asked
        declared = self.metadata(f"{self.metadata('general.architecture')}.pooling_type")
        if declared is not None and declared.isdigit() and int(declared) in _POOLING_NAMES:
            return _POOLING_NAMES[int(declared)]
        return "mean"

    def metadata(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self._model, buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def tokenize(self, text: str) -> list[int]:
        """The text's tokens with the model's own markers ([CLS] ... [SEP] for BERT); special
        tokens written in the text stay text."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), tokens, capacity, True, False)
        if n < 0:
            capacity = -n
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), tokens, capacity, True, False
            )
        if n < 0:
            raise ValueError("text could not be tokenized")
        return list(tokens[:n])

    def with_markers(self, ids: Sequence[int]) -> list[int]:
        """Client token ids with the start/end markers ``tokenize`` adds, where absent."""
        tokens = list(ids)
        if self.add_bos and self.bos >= 0 and (not tokens or tokens[0] != self.bos):
            tokens.insert(0, self.bos)
        for wanted, marker in ((self.add_eos, self.eos), (self.add_sep, self.sep)):
            if wanted and marker >= 0 and tokens[-1] != marker:
                tokens.append(marker)
        return tokens

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[Vector]:
        """Pooled (not normalized) vectors of ``inputs``, all decoded in one batch."""
        if len(inputs) > self.n_seq_max or sum(map(len, inputs)) > self.n_batch:
            raise ValueError("the inputs do not fit one batch")
        batch = self._batch
        batch.clear()
        for seq_id, tokens in enumerate(inputs):
            for pos, token in enumerate(tokens):
                batch.add(token, pos, seq_id, want_logits=True)
        try:
            rc = int(llama_cpp.llama_decode(self._ctx, batch.submit()))
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            vectors = []
            for seq_id in range(len(inputs)):
                pointer = llama_cpp.llama_get_embeddings_seq(self._ctx, seq_id)
                if not pointer:
                    raise RuntimeError("llama.cpp returned no pooled embedding")
                row = np.ctypeslib.as_array(pointer, shape=(self.dimensions,))
                vectors.append(np.array(row, dtype=np.float32))
            return vectors
        finally:
            if self._memory:
                llama_cpp.llama_memory_clear(self._memory, True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._batch.close()
        llama_cpp.llama_free(self._ctx)
        llama_cpp.llama_model_free(self._model)

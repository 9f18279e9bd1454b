"""Convert a sentence-transformers BERT directory (safetensors) into a llama.cpp GGUF file.

llama.cpp's own converter (``convert_hf_to_gguf.py``) imports torch and transformers; this one
needs only the ``gguf`` package and numpy, so an install step can run it inside the guest. It
writes what that converter writes for a ``BertModel`` (llama.cpp's ``bert`` architecture): the
same tensor names (through gguf's own name map), the same tensor types for a given file type,
WordPiece vocabulary in llama.cpp's "phantom space" form, special tokens, and the pooling the
sentence-transformers ``Pooling`` module declares. The output is a pure function of the input
files and the ``gguf`` version, so two installs of the same weights produce the same bytes
(and the same weights hash in response tokens).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from enclave_backend.model_file import ModelFileError

FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}
_TENSOR_TYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
}
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
# Buffers and heads that an embedding model does not use (the converter drops them too).
_SKIPPED = ("embeddings.position_ids", "pooler.", "cls.")
_POOLING_MODES = {
    "pooling_mode_mean_tokens": gguf.PoolingType.MEAN,
    "pooling_mode_cls_token": gguf.PoolingType.CLS,
    "pooling_mode_lasttoken": gguf.PoolingType.LAST,
}
# The special tokens GGUF has keys for ("cls" has none: llama.cpp takes BERT's BOS for it).
_SPECIAL_TYPES = ("bos", "eos", "unk", "sep", "pad", "mask")
# What llama.cpp's converter detects for the bert-base-uncased WordPiece vocabulary (its
# chktxt hash 0876d13b...); WPM tokenization does not depend on it.
TOKENIZER_PRE = "bert-bge"


def read_safetensors(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """The tensors of a ``.safetensors`` file (8-byte header size, JSON header, raw data),
    memory-mapped, in the header's order."""
    with path.open("rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        if header_size > 100 * 1024 * 1024:
            raise ModelFileError(f"{path} is not a safetensors file (header too large)")
        header: dict[str, Any] = json.loads(handle.read(header_size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_size)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ModelFileError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=np.dtype(dtype).newbyteorder("<"))
        yield name, array.reshape(info["shape"])


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read {path}: {exc}") from None


def pooling_type(source: Path) -> gguf.PoolingType | None:
    """The pooling the sentence-transformers ``modules.json`` declares, None if it has none."""
    modules_file = source / "modules.json"
    if not modules_file.is_file():
        return None
    for module in _json(modules_file):
        if str(module.get("type", "")).endswith("Pooling"):
            config = _json(source / module["path"] / "config.json")
            for key, kind in _POOLING_MODES.items():
                if config.get(key):
                    return kind
            raise ModelFileError(f"{source}: only mean, cls and last-token pooling are supported")
    return None


def _vocabulary(source: Path, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens in llama.cpp's WPM form ("##x" -> "x", "x" -> "\u2581x") and their types."""
    tokenizer = _json(source / "tokenizer.json")
    model = tokenizer.get("model", {})
    if model.get("type") != "WordPiece":
        raise ModelFileError(f"{source}: expected a WordPiece tokenizer, found {model.get('type')}")
    by_id = {int(i): token for token, i in model["vocab"].items()}
    special = {int(t["id"]) for t in tokenizer.get("added_tokens", ()) if t.get("special")}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in special:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _tensor_type(gguf_name: str, array: np.ndarray, file_type: str) -> gguf.GGMLQuantizationType:
    # The rule of llama.cpp's converter: 1-D tensors, norms, position and token-type
    # embeddings stay F32; other weights take the file type.
    if array.ndim <= 1 or gguf_name.endswith("_norm.weight") or not gguf_name.endswith(".weight"):
        return gguf.GGMLQuantizationType.F32
    if gguf_name.startswith(("position_embd.", "token_types.")):
        return gguf.GGMLQuantizationType.F32
    return _TENSOR_TYPES[file_type]


def convert_bert(source: Path, out: Path, *, file_type: str = "f16", name: str = "") -> None:
    """Write ``source`` (a directory with config.json, tokenizer.json, model.safetensors and
    optionally modules.json) as a GGUF file at ``out`` (overwritten)."""
    if file_type not in FILE_TYPES:
        raise ModelFileError(f"unknown file type {file_type!r}; use one of {sorted(FILE_TYPES)}")
    config = _json(source / "config.json")
    if config.get("model_type") != "bert":
        raise ModelFileError(f"{source}: expected a BERT model, found {config.get('model_type')}")
    n_layer = int(config["num_hidden_layers"])
    n_vocab = int(config["vocab_size"])
    tokens, token_types = _vocabulary(source, n_vocab)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT]

    writer = gguf.GGUFWriter(out, arch)
    try:
        writer.add_name(name or source.name)
        writer.add_block_count(n_layer)
        writer.add_context_length(int(config["max_position_embeddings"]))
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_head_count(int(config["num_attention_heads"]))
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        pooling = pooling_type(source)
        if pooling is not None:
            writer.add_pooling_type(pooling)
        writer.add_file_type(FILE_TYPES[file_type])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

        writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre(TOKENIZER_PRE)
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        special = gguf.SpecialVocab(source, special_token_types=_SPECIAL_TYPES, n_vocab=n_vocab)
        special.add_to_gguf(writer, quiet=True)

        for hf_name, array in read_safetensors(source / "model.safetensors"):
            hf_name = hf_name.removeprefix("bert.")
            if hf_name.startswith(_SKIPPED):
                continue
            gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ModelFileError(f"{source}: tensor {hf_name} has no llama.cpp equivalent")
            qtype = _tensor_type(gguf_name, array, file_type)
            data = gguf.quants.quantize(np.asarray(array, dtype=np.float32), qtype)
            writer.add_tensor(gguf_name, data, raw_dtype=qtype)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def convert_bert_atomically(
    source: Path, out: Path, *, file_type: str = "f16", name: str = ""
) -> Path:
    """``convert_bert`` into a temporary name, renamed into place only once complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    try:
        convert_bert(source, tmp, file_type=file_type, name=name)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out

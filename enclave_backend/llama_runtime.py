"""The llama.cpp model and context, through llama-cpp-python's low-level (ctypes) API.

``LlamaRuntime`` owns one model, its vocabulary and one context with ``n_slots`` sequences,
each with its own KV cells (``kv_unified`` off: a slot's cells are its own, so freeing
them frees nothing another slot could use, and attention never scans other slots' cells).
Everything here is a thin, typed wrapper; scheduling lives in ``scheduler``.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from enclave_backend.model_file import ModelFileError, check_gguf

log = logging.getLogger("enclave_backend.llama")

# GGML_LOG_LEVEL_WARN and _ERROR; DEBUG, INFO and CONT (progress dots) are dropped.
_FORWARDED_LOG_LEVELS = (3, 4)
_backend_lock = threading.Lock()
_backend_ready = False


@dataclass(frozen=True)
class RuntimeOptions:
    """How the model is loaded and the context sized."""

    model_path: Path
    n_slots: int = 4
    ctx_per_slot: int = 2048
    n_batch: int = 512
    n_threads: int = 2
    n_threads_batch: int = 2
    flash_attn: str = "auto"  # "on", "off", or llama.cpp's choice (on where supported)


@dataclass(frozen=True)
class SpecialToken:
    """A vocabulary token that llama_tokenize may match as a whole inside text."""

    id: int
    text: str  # the vocabulary's own text for it, what llama.cpp's tokenizer matches
    attr: int

    @property
    def control(self) -> bool:
        return bool(self.attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL)

    @property
    def unknown(self) -> bool:
        return bool(self.attr & llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN)

    @property
    def user_defined(self) -> bool:
        return bool(self.attr & llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED)


_SPECIAL_ATTRS = (
    llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
)


class LlamaLoadError(Exception):
    """llama.cpp refused the model or could not build a context for it."""


_quiet = threading.local()


@contextmanager
def llama_log_silenced() -> Iterator[None]:
    """Drop llama.cpp's log lines from this thread meanwhile: its grammar parser prints the
    whole grammar on an error, and a grammar holds a client's schema strings."""
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = False


def _forward_llama_log(level: int, text: bytes | None, _user: Any) -> None:
    if text and level in _FORWARDED_LOG_LEVELS and not getattr(_quiet, "on", False):
        log.warning("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


_log_callback = llama_cpp.llama_log_callback(_forward_llama_log)


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its log lines through ``logging``."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True


class LlamaRuntime:
    """One loaded GGUF model with a context of ``n_slots`` independent sequences."""

    def __init__(self, options: RuntimeOptions) -> None:
        check_gguf(options.model_path)
        init_backend()
        self.options = options
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model = llama_cpp.llama_model_load_from_file(str(options.model_path).encode(), model_params)
        if not model:
            raise ModelFileError(
                f"llama.cpp could not load {options.model_path}: the file is corrupt, "
                "truncated or uses an unsupported architecture"
            )
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))

        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = options.ctx_per_slot * options.n_slots
        ctx_params.n_seq_max = options.n_slots
        ctx_params.n_batch = options.n_batch
        ctx_params.n_ubatch = options.n_batch
        ctx_params.n_threads = options.n_threads
        ctx_params.n_threads_batch = options.n_threads_batch
        ctx_params.kv_unified = False
        ctx_params.no_perf = True
        ctx_params.flash_attn_type = {
            "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }.get(options.flash_attn, llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO)
        ctx = llama_cpp.llama_init_from_model(model, ctx_params)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise LlamaLoadError(
                f"llama.cpp could not create a context of {options.n_slots} slots x "
                f"{options.ctx_per_slot} tokens; lower --slots or --ctx-per-slot"
            )
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self.ctx_per_slot = int(llama_cpp.llama_n_ctx_seq(ctx))
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._special_tokens: tuple[SpecialToken, ...] | None = None
        self._closed = False

    # -- model facts -------------------------------------------------------------------
    def metadata(self, key: str) -> str | None:
        size = 1 << 10
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", "replace")
            size = n + 1

    def chat_template_source(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8", "replace") if raw else None

    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self._model, buf, 256)
        return buf.value.decode("utf-8", "replace")

    @property
    def add_bos(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))

    @property
    def add_eos(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_eos(self._vocab))

    def special_tokens(self) -> tuple[SpecialToken, ...]:
        """Tokens llama.cpp's tokenizer matches by their text (CONTROL, USER_DEFINED and
        UNKNOWN attributes; the first and last only with ``parse_special``)."""
        if self._special_tokens is None:
            found = []
            for token in range(self.n_vocab):
                attr = int(llama_cpp.llama_vocab_get_attr(self._vocab, token))
                if attr & _SPECIAL_ATTRS:
                    raw = llama_cpp.llama_vocab_get_text(self._vocab, token) or b""
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        continue  # no Python string holds it
                    found.append(SpecialToken(token, text, attr))
            self._special_tokens = tuple(found)
        return self._special_tokens

    @property
    def bos_token(self) -> int:
        return int(llama_cpp.llama_vocab_bos(self._vocab))

    @property
    def eos_token(self) -> int:
        return int(llama_cpp.llama_vocab_eos(self._vocab))

    def fill_in_middle_tokens(self) -> tuple[int, int, int] | None:
        """The prefix, suffix and middle markers of fill-in-the-middle, as llama.cpp found them
        in the vocabulary (``<fim_prefix>``, ``<|fim_prefix|>``, ``<PRE>``, ...); None when the
        model has not all three."""
        found = (
            int(llama_cpp.llama_vocab_fim_pre(self._vocab)),
            int(llama_cpp.llama_vocab_fim_suf(self._vocab)),
            int(llama_cpp.llama_vocab_fim_mid(self._vocab)),
        )
        return found if all(t >= 0 for t in found) else None

    def token_text(self, token: int) -> str:
        """The token as written in templates (special tokens rendered), '' when absent."""
        if token < 0:
            return ""
        return self.token_piece(token, special=True).decode("utf-8", "replace")

    # -- text <-> tokens ----------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(
            self._vocab, data, len(data), tokens, capacity, add_special, parse_special
        )
        if n < 0:
            capacity = -n
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), tokens, capacity, add_special, parse_special
            )
        if n < 0:
            raise ValueError("text could not be tokenized")
        return list(tokens[:n])

    def token_piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token; not valid UTF-8 on its own for split characters."""
        buf = self._piece_buffer
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            bigger = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, bigger, -n, 0, special)
            return bigger.raw[:n]
        return buf.raw[:n]

    def pieces(self, tokens: list[int], *, special: bool = False) -> list[bytes]:
        """Each token's bytes, like ``token_piece`` but safe beside the decode loop (its own
        buffer)."""
        buf = ctypes.create_string_buffer(256)
        out = []
        for token in tokens:
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
            out.append(buf.raw[:n])
        return out

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # -- decoding -----------------------------------------------------------------------
    @property
    def context(self) -> Any:
        return self._ctx

    @property
    def vocab(self) -> Any:
        return self._vocab

    def decode(self, batch: Any) -> int:
        return int(llama_cpp.llama_decode(self._ctx, batch))

    def forget(self, seq_id: int, from_pos: int = 0) -> bool:
        """Drop a sequence's KV cells from ``from_pos`` on; False if only a full clear works."""
        return bool(llama_cpp.llama_memory_seq_rm(self._memory, seq_id, from_pos, -1))

    def copy_sequence(self, source: int, target: int, length: int) -> bool:
        """Give ``target`` the first ``length`` cells of ``source`` (positions 0..length-1),
        replacing whatever ``target`` held; False if llama.cpp could not trim the copy.

        Each slot has its own KV stream (``kv_unified`` off), and llama.cpp copies between
        streams only whole: the copy is queued and runs at the start of the next
        ``llama_decode``, before that batch writes any cell, so the source may take new
        tokens in the same batch. The cells past ``length`` are then dropped from the target.
        """
        llama_cpp.llama_memory_seq_cp(self._memory, source, target, -1, -1)
        return bool(llama_cpp.llama_memory_seq_rm(self._memory, target, length, -1))

    def clear_sequence(self, seq_id: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        llama_cpp.llama_free(self._ctx)
        llama_cpp.llama_model_free(self._model)

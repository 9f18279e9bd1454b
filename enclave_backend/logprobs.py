"""Log-probabilities of the sampled tokens, for the requests that ask for them.

What a logprob means here: the natural log of the probability the *model* gave the token at
that position, ``log_softmax`` of the raw logits over the whole vocabulary, before anything
the request puts on top of the model: ``logit_bias``, repetition/frequency/presence
penalties, the grammar of ``tools`` or ``response_format``, temperature, and top-k / top-p /
min-p truncation. The sampled token is drawn from the shaped distribution; its logprob is
read from the model's. This is what OpenAI reports (its logprobs do not move with
temperature), vLLM's default (``logprobs_mode=raw_logprobs``) and llama-server's default, and
it is the same whatever the temperature: greedy and temperature 0 report exactly what
temperature 1 would. So at temperature 0 with no bias, penalty or grammar the sampled token
is the first of ``top_logprobs``; with them it may not be (a token a grammar forced, or a
bias pushed, keeps the possibly low logprob the model gave it, which is what an evaluation
wants to see). Values are finite (raw logits are); a non-finite one would be reported as
-9999.0, OpenAI's floor.

``top_logprobs`` are the ``k`` most likely tokens under the same distribution, most likely
first (ties by token id); the sampled token may or may not be among them.

Cost: nothing for a request that does not ask. For one that does, per sampled token and in
the decode thread (while that step's logits are valid): one log-sum-exp over the vocabulary
and, with ``k > 0``, one ``argpartition`` plus a sort of ``k`` values.

A token's ``token`` string is its text piece decoded with replacement (a piece holding part
of a UTF-8 character shows U+FFFD there); ``bytes`` are the piece's raw bytes, so the bytes
of consecutive tokens concatenate to the exact UTF-8 of the text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np

from enclave_backend.llama_runtime import LlamaRuntime

LOGPROB_FLOOR = -9999.0


@dataclass(frozen=True)
class TokenAlternative:
    token: int
    piece: bytes
    logprob: float

    @property
    def text(self) -> str:
        return self.piece.decode("utf-8", "replace")


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token: its logprob, its ``k`` alternatives, and where its text starts in
    the choice's generated text (characters)."""

    sampled: TokenAlternative
    top: tuple[TokenAlternative, ...]
    text_offset: int


class LogprobReader:
    """Reads logprobs from the logits of the last ``llama_decode`` (decode thread only)."""

    def __init__(self, runtime: LlamaRuntime) -> None:
        self._runtime = runtime

    def read(
        self, output_index: int, token: int, k: int, *, special: bool, text_offset: int
    ) -> TokenLogprob:
        runtime = self._runtime
        row = llama_cpp.llama_get_logits_ith(runtime.context, output_index)
        logits = np.ctypeslib.as_array(row, shape=(runtime.n_vocab,))  # a view, no copy
        peak = float(logits.max())
        # exp in float32 (2x faster than a float64 copy), summed in float64: ~1e-8 off.
        norm = peak + math.log(float(np.exp(logits - peak).sum(dtype=np.float64)))

        def alternative(token_id: int) -> TokenAlternative:
            piece = runtime.token_piece(token_id, special=special)
            return TokenAlternative(token_id, piece, _finite(float(logits[token_id]) - norm))

        top: tuple[TokenAlternative, ...] = ()
        k = min(k, runtime.n_vocab)
        if k > 0:
            best = np.argpartition(logits, -k)[-k:]
            ranked = best[np.lexsort((best, -logits[best]))]
            top = tuple(alternative(int(t)) for t in ranked)
        return TokenLogprob(alternative(token), top, text_offset)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else LOGPROB_FLOOR


# -- wire shapes ------------------------------------------------------------------------


def _chat_token(entry: TokenAlternative) -> dict[str, Any]:
    return {"token": entry.text, "logprob": entry.logprob, "bytes": list(entry.piece)}


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """A chat choice's ``logprobs``: ``{"content": [...], "refusal": None}`` as OpenAI."""
    return {
        "content": [
            {
                **_chat_token(entry.sampled),
                "top_logprobs": [_chat_token(alt) for alt in entry.top],
            }
            for entry in entries
        ],
        "refusal": None,
    }


def legacy_logprobs(entries: Sequence[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """A legacy completion choice's ``logprobs``: parallel lists, as OpenAI's
    ``/v1/completions``. Each ``top_logprobs`` dict maps token text to logprob, the sampled
    token always included (so up to ``k + 1`` entries; tokens of equal text keep the more
    likely one). ``text_offset`` counts characters of the choice's ``text``, so ``offset``
    shifts it by an echoed prompt."""
    tops: list[dict[str, float]] = []
    for entry in entries:
        top: dict[str, float] = {}
        for alt in (*entry.top, entry.sampled):
            top.setdefault(alt.text, alt.logprob)
        tops.append(top)
    return {
        "tokens": [entry.sampled.text for entry in entries],
        "token_logprobs": [entry.sampled.logprob for entry in entries],
        "top_logprobs": tops,
        "text_offset": [entry.text_offset + offset for entry in entries],
    }

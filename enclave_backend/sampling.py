"""Per-sequence sampling with llama.cpp sampler chains (all of it runs in C).

A chain is built once per sequence from ``SamplingParams``; ``sample`` applies it to that
sequence's logits in the last batch and accepts the token (updating penalties and grammar).
"""

from __future__ import annotations

import ctypes
import random
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from enclave_backend.llama_runtime import llama_log_silenced

_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp picks a random seed


class GrammarError(ValueError):
    """llama.cpp could not parse a grammar."""


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one sequence, already validated at the HTTP edge."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    seed: int | None = None
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    grammar: str | None = None
    # A lazy grammar waits for one of these (regexes over the output, or token ids) first.
    grammar_triggers: tuple[str, ...] = ()
    grammar_trigger_tokens: tuple[int, ...] = ()
    logit_bias: dict[int, float] = field(default_factory=dict)

    def resolved_seed(self) -> int:
        """A concrete 32-bit seed; reproducible when the client gave one."""
        if self.seed is None:
            return random.getrandbits(32) % _RANDOM_SEED
        # 0xFFFFFFFF means "random" to llama.cpp, so fold client seeds below it.
        return self.seed % _RANDOM_SEED


class SamplerChain:
    """An owned ``llama_sampler`` chain. Call ``close`` exactly once (the scheduler does)."""

    def __init__(self, params: SamplingParams, *, vocab: Any, n_vocab: int) -> None:
        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        self._chain: Any = llama_cpp.llama_sampler_chain_init(chain_params)
        try:
            self._build(params, vocab, n_vocab)
        except BaseException:
            llama_cpp.llama_sampler_free(self._chain)
            raise

    def _add(self, sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def _build(self, params: SamplingParams, vocab: Any, n_vocab: int) -> None:
        if params.grammar is not None:
            self._add(_grammar_sampler(params, vocab))
        if params.logit_bias:
            biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))()
            for i, (token, bias) in enumerate(params.logit_bias.items()):
                biases[i].token = token
                biases[i].bias = bias
            self._add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(biases), biases))
        if (
            params.repeat_penalty != 1.0
            or params.frequency_penalty != 0.0
            or params.presence_penalty != 0.0
        ):
            self._add(
                # The pinned binding declares n_vocab first, as this llama.h does.
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    params.penalty_last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
            )
        if params.temperature <= 0.0:
            self._add(llama_cpp.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            self._add(llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            self._add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            self._add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        self._add(llama_cpp.llama_sampler_init_temp(params.temperature))
        self._add(llama_cpp.llama_sampler_init_dist(params.resolved_seed()))

    def sample(self, ctx: Any, output_index: int) -> int:
        """Sample from the logits of batch position ``output_index`` and accept the token."""
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, output_index))

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


def _grammar_sampler(params: SamplingParams, vocab: Any) -> Any:
    assert params.grammar is not None
    text = params.grammar.encode("utf-8")
    if not params.grammar_triggers and not params.grammar_trigger_tokens:
        with llama_log_silenced():
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, text, b"root")
    else:
        patterns = (ctypes.c_char_p * len(params.grammar_triggers))(
            *(p.encode("utf-8") for p in params.grammar_triggers)
        )
        tokens = (llama_cpp.llama_token * len(params.grammar_trigger_tokens))(
            *params.grammar_trigger_tokens
        )
        with llama_log_silenced():
            sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
                vocab, text, b"root", patterns, len(patterns), tokens, len(tokens)
            )
    if not sampler:
        raise GrammarError(
            "the grammar for this request could not be built (a schema too large or too "
            "complex to enforce)"
        )
    return sampler

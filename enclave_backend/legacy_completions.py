"""From a validated legacy completion request to generation requests, and back to OpenAI's
``text_completion`` objects and stream chunks: chat completions without the template.

Each prompt is tokenized as plain text, with the model's BOS where its vocabulary asks for
one: no special token is ever parsed from a client's text (there is no template here, so
there are none at all), exactly as chat tokenizes message contents. A token-id prompt is
used as given (ids checked against the vocabulary). ``suffix`` turns the prompt into
fill-in-the-middle, ``[BOS] <prefix marker> prompt <suffix marker> suffix <middle marker>``,
only for a model whose vocabulary has the three markers; for any other model a non-empty
``suffix`` is a 400 naming it. The choices of a list of prompts times ``n`` are numbered as
OpenAI does, ``index = prompt_index * n + choice``, and all of them run on the same
scheduler, tenant fairness, prompt cache, limits and cancellation as chat's.

``logprobs: k`` reports, per sampled token, its logprob and the ``k`` most likely tokens
(see ``logprobs`` for what a value means) in OpenAI's legacy shape; ``text_offset`` counts
characters of the choice's ``text``. ``echo`` puts the prompt's text before each choice's
text (a token-id prompt's text is its tokens' pieces); for a fill-in-the-middle request the
echoed text is the prompt, not the suffix.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from confidential_common.errors import APIError, bad_request
from enclave_backend.choices import (
    check_capacity,
    collect,
    engine_info,
    logit_bias_ids,
    merge,
    queue_choices,
    usage,
)
from enclave_backend.completion_protocol import CompletionRequest
from enclave_backend.generation import Finished, GenerationHandle, GenerationRequest, TextDelta
from enclave_backend.llama_runtime import LlamaRuntime
from enclave_backend.logprobs import legacy_logprobs
from enclave_backend.prompt_tokens import PromptTokenizer
from enclave_backend.sampling import SamplerChain, SamplingParams
from enclave_backend.scheduler import SlotScheduler


@dataclass
class CompletionSubmission:
    """The choices of one request (prompt-major), queued on the scheduler."""

    completion_id: str
    created: int
    model: str
    handles: list[GenerationHandle]
    echoes: list[str]  # per choice: the text put before it ("" without echo)
    prompt_tokens: list[int]  # per prompt
    n: int
    logprobs: bool

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    def cached_tokens(self, finished: list[Finished], choices: list[int]) -> int:
        """Per prompt the most any of its choices reused, summed over the prompts."""
        best: dict[int, int] = {}
        for index, event in zip(choices, finished, strict=True):
            prompt = index // self.n
            best[prompt] = max(best.get(prompt, 0), event.cached_tokens)
        return sum(best.values())


@dataclass(frozen=True)
class _Prompt:
    tokens: list[int]
    text: str  # what ``echo`` shows


class LegacyCompletions:
    def __init__(
        self,
        *,
        runtime: LlamaRuntime,
        scheduler: SlotScheduler,
        tokenizer: PromptTokenizer,
        model_name: str,
        fingerprint: str,
    ) -> None:
        self._runtime = runtime
        self._scheduler = scheduler
        self._tokenizer = tokenizer
        self.model_name = model_name
        self.fingerprint = fingerprint

    # -- request -> queued generations --------------------------------------------------
    def submit(
        self, request: CompletionRequest, *, tenant: str = "", weight: int = 1
    ) -> CompletionSubmission:
        """Queue every prompt's ``n`` choices for ``tenant`` (see ``ChatCompletions.submit``)."""
        if request.model != self.model_name:
            raise APIError(
                404,
                f"The model '{request.model}' does not exist; this engine serves "
                f"'{self.model_name}'.",
                param="model",
                code="model_not_found",
            )
        texts = request.prompts()
        check_capacity(
            self._scheduler, len(texts) * request.n, "n" if len(texts) == 1 else "prompt"
        )
        fill_in_middle = self._fill_in_middle(request.suffix) if request.suffix else None
        prompts = [self._prompt(p, fill_in_middle) for p in texts]
        limits = [self._max_tokens(request, len(p.tokens)) for p in prompts]
        defaults = SamplingParams()
        params = SamplingParams(
            temperature=_pick(request.temperature, defaults.temperature),
            top_p=_pick(request.top_p, defaults.top_p),
            seed=request.seed,
            frequency_penalty=_pick(request.frequency_penalty, defaults.frequency_penalty),
            presence_penalty=_pick(request.presence_penalty, defaults.presence_penalty),
            logit_bias=logit_bias_ids(request.logit_bias, self._runtime.n_vocab),
        )
        stops = request.stop_sequences()

        def choice(index: int) -> GenerationRequest:
            prompt, nth = divmod(index, request.n)
            seed = None if params.seed is None else params.seed + nth
            return GenerationRequest(
                prompt=prompts[prompt].tokens,
                sampler=SamplerChain(
                    replace(params, seed=seed),
                    vocab=self._runtime.vocab,
                    n_vocab=self._runtime.n_vocab,
                ),
                max_tokens=limits[prompt],
                stops=stops,
                handle=GenerationHandle(),
                use_prompt_cache=request.seed is None,
                tenant=tenant,
                weight=weight,
                top_logprobs=request.logprobs,
            )

        handles = queue_choices(self._scheduler, len(prompts) * request.n, choice)
        return CompletionSubmission(
            completion_id=f"cmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=self.model_name,
            handles=handles,
            echoes=[
                prompts[i // request.n].text if request.echo else "" for i in range(len(handles))
            ],
            prompt_tokens=[len(p.tokens) for p in prompts],
            n=request.n,
            logprobs=request.logprobs is not None,
        )

    def _fill_in_middle(self, suffix: str) -> tuple[list[int], list[int]]:
        """What goes before and after the prompt's tokens for fill-in-the-middle."""
        markers = self._runtime.fill_in_middle_tokens()
        if markers is None:
            raise bad_request(
                "This model does not support fill-in-the-middle (its vocabulary has no "
                "prefix/suffix/middle markers), so 'suffix' cannot be honoured; send the "
                "prompt without it.",
                param="suffix",
                code="unsupported_parameter",
            )
        prefix_marker, suffix_marker, middle_marker = markers
        bos = [self._runtime.bos_token] if self._runtime.add_bos else []
        after = [suffix_marker, *self._tokenizer.as_text(suffix), middle_marker]
        return [*bos, prefix_marker], after

    def _prompt(
        self, prompt: str | list[int], fill_in_middle: tuple[list[int], list[int]] | None
    ) -> _Prompt:
        runtime = self._runtime
        if isinstance(prompt, str):
            text = prompt
            body = self._tokenizer.as_text(prompt)
            bos = [runtime.bos_token] if runtime.add_bos else []
        else:
            if any(not 0 <= t < runtime.n_vocab for t in prompt):
                raise bad_request(
                    "Invalid token in 'prompt': every token id must be one of this model's "
                    f"(an integer 0..{runtime.n_vocab - 1}).",
                    param="prompt",
                    code="invalid_value",
                )
            text = b"".join(runtime.pieces(prompt)).decode("utf-8", "replace")
            body, bos = prompt, []  # token ids are used as given
        if fill_in_middle is not None:
            before, after = fill_in_middle
            tokens = [*before, *body, *after]
        else:
            tokens = [*bos, *body]
        if not tokens:
            raise bad_request(
                "'prompt' is empty: this model needs at least one token to continue from.",
                param="prompt",
                code="invalid_value",
            )
        limit = runtime.ctx_per_slot
        if len(tokens) >= limit:
            raise bad_request(
                f"This model's maximum context length is {limit} tokens. However, your "
                f"prompt resulted in {len(tokens)} tokens. Please reduce the length of the "
                "prompt.",
                param="prompt",
                code="context_length_exceeded",
            )
        return _Prompt(tokens, text)

    def _max_tokens(self, request: CompletionRequest, prompt_tokens: int) -> int:
        asked = request.token_limit()
        room = self._runtime.ctx_per_slot - prompt_tokens
        if request.max_tokens is None:
            return min(asked, room)  # a default never refuses a prompt that fits
        if asked > room:
            raise bad_request(
                f"This model's maximum context length is {self._runtime.ctx_per_slot} tokens. "
                f"However, you requested {prompt_tokens + asked} tokens "
                f"({prompt_tokens} in your prompt, {asked} for the completion). "
                "Please reduce your prompt or completion length.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return asked

    # -- events -> OpenAI payloads ------------------------------------------------------
    def _base(self, submission: CompletionSubmission) -> dict[str, Any]:
        return {
            "id": submission.completion_id,
            "object": "text_completion",
            "created": submission.created,
            "model": submission.model,
            "system_fingerprint": self.fingerprint,
        }

    async def complete(self, submission: CompletionSubmission) -> dict[str, Any]:
        """Wait for every choice and build one ``text_completion`` object."""
        results = await asyncio.gather(*(collect(h) for h in submission.handles))
        choices = []
        for index, result in enumerate(results):
            echo = submission.echoes[index]
            choices.append(
                {
                    "index": index,
                    "text": echo + result.text,
                    "logprobs": (
                        legacy_logprobs(result.logprobs, len(echo)) if submission.logprobs else None
                    ),
                    "finish_reason": result.finished.finish_reason,
                }
            )
        finished = [result.finished for result in results]
        return {
            **self._base(submission),
            "choices": choices,
            "usage": self._usage(submission, finished, list(range(len(finished)))),
            "x_engine": engine_info(finished),
        }

    async def stream(
        self, submission: CompletionSubmission, *, include_usage: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """``text_completion`` chunks as the choices produce text."""
        base = self._base(submission)
        extra = {"usage": None} if include_usage else {}

        def chunk(
            index: int, text: str, logprobs: dict[str, Any] | None, finish: str | None
        ) -> dict[str, Any]:
            return {
                **base,
                "choices": [
                    {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
                ],
                **extra,
            }

        for index, echo in enumerate(submission.echoes):
            if echo:
                yield chunk(index, echo, None, None)
        finished: list[Finished] = []
        order: list[int] = []
        async for index, event in merge(submission.handles):
            if isinstance(event, TextDelta):
                logprobs = (
                    legacy_logprobs(event.logprobs, len(submission.echoes[index]))
                    if submission.logprobs
                    else None
                )
                yield chunk(index, event.text, logprobs, None)
            else:
                finished.append(event)
                order.append(index)
                yield chunk(index, "", None, event.finish_reason)
        if include_usage:
            yield {
                **base,
                "choices": [],
                "usage": self._usage(submission, finished, order),
                "x_engine": engine_info(finished),
            }

    @staticmethod
    def _usage(
        submission: CompletionSubmission, finished: list[Finished], choices: list[int]
    ) -> dict[str, Any]:
        return usage(
            sum(submission.prompt_tokens),
            sum(f.completion_tokens for f in finished),
            submission.cached_tokens(finished, choices),
        )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value

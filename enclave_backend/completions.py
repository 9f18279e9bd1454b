"""From a validated chat request to generation requests, and from events to OpenAI payloads.

``ChatCompletions`` is the engine's behaviour behind ``/v1/chat/completions``: it renders
the prompt with the model's template, checks it fits the slot's context, builds one sampler
chain per choice, queues the choices on the scheduler, and turns the resulting events into
OpenAI completion objects or stream chunks. It knows nothing of HTTP.

Logprobs (``logprobs: true``, ``top_logprobs`` 0..20; see ``logprobs`` for what a value
means) cover every token the choice sampled, in order, the end-of-turn token excepted: a
choice's ``logprobs.content`` lists them whole, a stream's chunk lists those whose text
starts in its delta. With tools, the tokens the engine parsed into ``tool_calls`` (the
format's markers and the arguments) are listed in ``logprobs.content`` too, where OpenAI has
no other place for them: their ``token`` strings then concatenate to the raw generated
text, not to ``message.content``. In a stream, the logprobs of text a tool parser still
holds back ride the next chunk that choice sends (at the latest its ``finish_reason`` chunk).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from confidential_common.errors import APIError as GatewayError
from confidential_common.errors import bad_request
from enclave_backend.chat_template import ChatTemplate, ChatTemplateError
from enclave_backend.choice_output import ChoiceOutput
from enclave_backend.choices import (
    check_capacity,
    collect,
    engine_info,
    logit_bias_ids,
    merge,
    queue_choices,
    usage,
)
from enclave_backend.generation import Finished, GenerationHandle, GenerationRequest, TextDelta
from enclave_backend.grammar import SchemaGrammarError, json_object_grammar, json_schema_grammar
from enclave_backend.llama_runtime import LlamaRuntime
from enclave_backend.logprobs import TokenLogprob, chat_logprobs
from enclave_backend.prompt_tokens import prompt_tokenizer
from enclave_backend.protocol import ChatCompletionRequest
from enclave_backend.sampling import GrammarError, SamplerChain, SamplingParams
from enclave_backend.scheduler import SlotScheduler
from enclave_backend.tools.formats import ResponseShape, ToolFormat, tool_format_for
from enclave_backend.tools.spec import ToolSpec

log = logging.getLogger("enclave_backend.completions")


@dataclass
class Submission:
    """The choices of one request, queued on the scheduler."""

    completion_id: str
    created: int
    model: str
    handles: list[GenerationHandle]
    outputs: list[ChoiceOutput]
    prompt_tokens: int
    logprobs: bool = False

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()


class ChatCompletions:
    def __init__(
        self,
        *,
        runtime: LlamaRuntime,
        scheduler: SlotScheduler,
        template: ChatTemplate,
        model_name: str,
        fingerprint: str,
        weights_sha256: str,
    ) -> None:
        self._runtime = runtime
        self._scheduler = scheduler
        self._template = template
        self.tool_format: ToolFormat = tool_format_for(template.source)
        self.model_name = model_name
        self.fingerprint = fingerprint
        self.weights_sha256 = weights_sha256

    # -- request -> queued generations --------------------------------------------------
    def submit(
        self, request: ChatCompletionRequest, *, tenant: str = "", weight: int = 1
    ) -> Submission:
        """Queue the request's choices for ``tenant`` (an opaque API-key id, "" anonymous),
        scheduled fairly with share ``weight`` and reusing only that tenant's cached prefixes."""
        if request.model != self.model_name:
            raise GatewayError(
                404,
                f"The model '{request.model}' does not exist; this engine serves "
                f"'{self.model_name}'.",
                param="model",
                code="model_not_found",
            )
        check_capacity(self._scheduler, request.n, "n")
        _check_arguments_depth(request)
        spec = request.tool_spec()
        tool_format = self.tool_format if spec is not None else None
        try:
            prompt = self._prompt_tokens(request, spec)
            max_tokens = self._max_tokens(request, len(prompt))
            params = self._sampling_params(request, spec)
        except RecursionError:
            # A value nested past what any renderer handles; the request, not the engine.
            raise bad_request(
                "The request contains values nested too deeply to process.",
                code="invalid_value",
            ) from None
        # The generic envelope is grammar-shaped from its first token: a stop string inside
        # it would cut a call in half, so stops apply only where text is free.
        stops = () if spec is not None and not self.tool_format.renders_tools else None

        def choice(index: int) -> GenerationRequest:
            seed = None if params.seed is None else params.seed + index
            return GenerationRequest(
                prompt=prompt,
                sampler=self._sampler_chain(
                    replace(params, seed=seed), "tools" if spec else "response_format"
                ),
                max_tokens=max_tokens,
                stops=request.stop_sequences() if stops is None else stops,
                handle=GenerationHandle(),
                special_pieces=tool_format is not None and tool_format.renders_tools,
                use_prompt_cache=request.seed is None,
                tenant=tenant,
                weight=weight,
                top_logprobs=request.top_logprobs_asked(),
            )

        handles = queue_choices(self._scheduler, request.n, choice)
        return Submission(
            completion_id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=self.model_name,
            handles=handles,
            outputs=[self._choice_output(request, tool_format) for _ in handles],
            prompt_tokens=len(prompt),
            logprobs=request.top_logprobs_asked() is not None,
        )

    def shareable_prefix(self, text: str) -> list[int]:
        """The prompt tokens every conversation opening with system message ``text`` starts
        with (an operator-marked prefix any tenant may reuse from another's cache).

        The template renders ``[{"role": "system", "content": text}]`` without a generation
        prompt, the string is cut right after the content and tokenized as prompts are; the
        tokens are kept as far as they agree with a real prompt with that system message (a
        token straddling the cut could merge differently). Raises ``ValueError`` when the
        template does not render the text verbatim or it does not fit a slot."""
        messages = [{"role": "system", "content": text}]
        tokenizer = prompt_tokenizer(self._runtime, self._template.source)
        neutral, _, meaning = tokenizer.neutralise(messages, None)
        content = str(neutral[0]["content"])
        try:
            rendered = self._template.render(neutral, add_generation_prompt=False)
        except ChatTemplateError as exc:
            raise ValueError(f"the chat template cannot render it: {exc}") from None
        at = rendered.rfind(content)
        if not text or at < 0:
            raise ValueError("the chat template does not render it verbatim as a system message")
        tokens = tokenizer.tokenize(rendered[: at + len(content)], meaning)
        probe = ChatCompletionRequest.model_validate(
            {"model": self.model_name, "messages": messages}
        )
        try:
            full = self._prompt_tokens(probe, None)
        except GatewayError as exc:
            raise ValueError(exc.message) from None
        n = 0
        while n < min(len(tokens), len(full)) and tokens[n] == full[n]:
            n += 1
        return tokens[:n]

    @staticmethod
    def _choice_output(
        request: ChatCompletionRequest, tool_format: ToolFormat | None
    ) -> ChoiceOutput:
        if tool_format is None:
            return ChoiceOutput(None, None)
        json_response = request.response_format is not None and (
            request.response_format.type != "text"
        )
        return ChoiceOutput(tool_format, tool_format.parser(response_is_json=json_response))

    def _prompt_tokens(self, request: ChatCompletionRequest, spec: ToolSpec | None) -> list[int]:
        messages = [m.for_template() for m in request.messages]
        with_tools = spec is not None or any(
            m.tool_calls or m.role == "tool" for m in request.messages
        )
        tools = None
        if with_tools:
            messages = self.tool_format.messages(messages, spec)
            if spec is not None and self.tool_format.renders_tools:
                tools = spec.tools_json()
        # Special tokens come from the template only: client strings are tokenized as text.
        tokenizer = prompt_tokenizer(self._runtime, self._template.source)
        messages, tools, markers = tokenizer.neutralise(messages, tools)
        try:
            text = self._template.render(messages, tools=tools)
        except ChatTemplateError as exc:
            raise bad_request(str(exc), param="messages") from None
        tokens = tokenizer.tokenize(text, markers)
        limit = self._runtime.ctx_per_slot
        if len(tokens) >= limit:
            raise bad_request(
                f"This model's maximum context length is {limit} tokens. However, your "
                f"messages resulted in {len(tokens)} tokens. Please reduce the length of "
                "the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        return tokens

    def _max_tokens(self, request: ChatCompletionRequest, prompt_tokens: int) -> int:
        room = self._runtime.ctx_per_slot - prompt_tokens
        asked = request.token_limit()
        if asked is None:
            return room
        if asked > room:
            param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
            raise bad_request(
                f"This model's maximum context length is {self._runtime.ctx_per_slot} tokens. "
                f"However, you requested {prompt_tokens + asked} tokens ({prompt_tokens} in "
                f"the messages, {asked} in the completion). Please reduce the length of the "
                "messages or completion.",
                param=param,
                code="context_length_exceeded",
            )
        return asked

    def _sampling_params(
        self, request: ChatCompletionRequest, spec: ToolSpec | None
    ) -> SamplingParams:
        defaults = SamplingParams()
        return SamplingParams(
            temperature=_pick(request.temperature, defaults.temperature),
            top_p=_pick(request.top_p, defaults.top_p),
            top_k=_pick(request.top_k, defaults.top_k),
            min_p=_pick(request.min_p, defaults.min_p),
            seed=request.seed,
            repeat_penalty=_pick(request.repeat_penalty, defaults.repeat_penalty),
            frequency_penalty=_pick(request.frequency_penalty, defaults.frequency_penalty),
            presence_penalty=_pick(request.presence_penalty, defaults.presence_penalty),
            logit_bias=logit_bias_ids(request.logit_bias, self._runtime.n_vocab),
            **self._grammar(request, spec),
        )

    def _grammar(self, request: ChatCompletionRequest, spec: ToolSpec | None) -> dict[str, Any]:
        """The grammar settings: tool calls, else response_format, else none."""
        response = _response_shape(request)
        if spec is None:
            if response is None:
                return {}
            grammar = json_object_grammar() if response == "object" else None
            if grammar is None:
                assert isinstance(response, dict)
                grammar = _schema_grammar(response, "response_format.json_schema.schema")
            return {"grammar": grammar}
        try:
            tool_grammar = self.tool_format.grammar(spec, response)
        except SchemaGrammarError as exc:
            raise bad_request(
                f"A tool's parameters (or response_format's schema) cannot be enforced: {exc}",
                param="tools",
                code="invalid_value",
            ) from None
        tokens = []
        for word in tool_grammar.trigger_words:
            ids = self._runtime.tokenize(word, add_special=False, parse_special=True)
            if len(ids) == 1:
                tokens.append(ids[0])
        return {
            "grammar": tool_grammar.gbnf,
            "grammar_triggers": tool_grammar.trigger_patterns,
            "grammar_trigger_tokens": tuple(tokens),
        }

    def _sampler_chain(self, params: SamplingParams, grammar_param: str) -> SamplerChain:
        try:
            return SamplerChain(params, vocab=self._runtime.vocab, n_vocab=self._runtime.n_vocab)
        except GrammarError as exc:
            raise bad_request(str(exc), param=grammar_param, code="invalid_value") from None

    # -- events -> OpenAI payloads ------------------------------------------------------
    async def complete(self, submission: Submission) -> dict[str, Any]:
        """Wait for every choice and build one ``chat.completion`` object."""
        results = await asyncio.gather(*(collect(h) for h in submission.handles))
        choices = []
        completion_tokens = 0
        cached = 0
        engine = engine_info([result.finished for result in results])
        for index, result in enumerate(results):
            finished = result.finished
            completion_tokens += finished.completion_tokens
            cached = max(cached, finished.cached_tokens)
            output = submission.outputs[index]
            output.push(result.text)
            output.finish()
            choices.append(
                {
                    "index": index,
                    "message": output.message(),
                    "logprobs": chat_logprobs(result.logprobs) if submission.logprobs else None,
                    "finish_reason": output.finish_reason(finished.finish_reason),
                }
            )
        return {
            "id": submission.completion_id,
            "object": "chat.completion",
            "created": submission.created,
            "model": submission.model,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
            "usage": usage(submission.prompt_tokens, completion_tokens, cached),
            "x_engine": engine,
        }

    async def stream(
        self, submission: Submission, *, include_usage: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk`` objects as the choices produce text."""
        base = {
            "id": submission.completion_id,
            "object": "chat.completion.chunk",
            "created": submission.created,
            "model": submission.model,
            "system_fingerprint": self.fingerprint,
        }
        extra = {"usage": None} if include_usage else {}

        # Logprobs of tokens whose text a tool parser still holds ride the next chunk out.
        unsent: list[list[TokenLogprob]] = [[] for _ in submission.handles]

        def chunk(index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            logprobs = unsent[index]
            unsent[index] = []
            return {
                **base,
                "choices": [
                    {
                        "index": index,
                        "delta": delta,
                        "logprobs": chat_logprobs(logprobs) if logprobs else None,
                        "finish_reason": finish,
                    }
                ],
                **extra,
            }

        for index in range(len(submission.handles)):
            yield chunk(index, {"role": "assistant", "content": ""}, None)
        completion_tokens = 0
        cached = 0
        finished: list[Finished] = []
        async for index, event in merge(submission.handles):
            output = submission.outputs[index]
            if isinstance(event, TextDelta):
                unsent[index].extend(event.logprobs)
                deltas = output.push(event.text)
                if not deltas and unsent[index] and output.is_plain:
                    deltas = [{"content": ""}]  # tokens without text (an empty piece)
                for delta in deltas:
                    yield chunk(index, delta, None)
            else:
                assert isinstance(event, Finished)
                completion_tokens += event.completion_tokens
                cached = max(cached, event.cached_tokens)
                finished.append(event)
                for delta in output.finish():
                    yield chunk(index, delta, None)
                yield chunk(index, {}, output.finish_reason(event.finish_reason))
        if include_usage:
            yield {
                **base,
                "choices": [],
                "usage": usage(submission.prompt_tokens, completion_tokens, cached),
                "x_engine": engine_info(finished),
            }


def shareable_prefixes(completions: ChatCompletions, texts: Sequence[str]) -> list[list[int]]:
    """Token prefixes of the operator's shareable system messages; exits on one that the
    template cannot render verbatim (start-up configuration, so it must not pass silently)."""
    prefixes = []
    for index, text in enumerate(texts):
        try:
            prefixes.append(completions.shareable_prefix(text))
        except ValueError as exc:
            raise SystemExit(
                f"enclave-backend: cannot start: shareable prefix #{index + 1}: {exc}"
            ) from None
    log.info("shareable prefixes (tokens): %s", [len(p) for p in prefixes])
    return prefixes


MAX_JSON_DEPTH = 128


def json_depth(text: str) -> int:
    """How deep ``[`` / ``{`` nest in ``text``, ignoring brackets inside JSON strings."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _check_arguments_depth(request: ChatCompletionRequest) -> None:
    """Tool-call ``arguments`` are JSON in a string: refuse nesting no renderer handles."""
    for i, message in enumerate(request.messages):
        for j, call in enumerate(message.tool_calls or ()):
            if json_depth(call.function.arguments) > MAX_JSON_DEPTH:
                raise bad_request(
                    f"Tool-call arguments may nest at most {MAX_JSON_DEPTH} levels deep.",
                    param=f"messages[{i}].tool_calls[{j}].function.arguments",
                    code="invalid_value",
                )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _response_shape(request: ChatCompletionRequest) -> ResponseShape:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object" or fmt.json_schema is None or not fmt.json_schema.schema_:
        return "object"
    return fmt.json_schema.schema_


def _schema_grammar(schema: dict[str, Any], param: str) -> str:
    try:
        return json_schema_grammar(schema)
    except SchemaGrammarError as exc:
        raise bad_request(
            f"{param} cannot be enforced: {exc}", param=param, code="invalid_value"
        ) from None

"""Prompt tokens in which special tokens come from the chat template only.

The rendered prompt is tokenized with ``parse_special`` on, so that the template's own
markers (``<|im_start|>``, ``<|eot_id|>``, ...) become their control tokens. A client's
literal ``<|im_end|>\\n<|im_start|>system`` would become the same tokens and forge turns. So,
before rendering, each occurrence of a guarded token's text in any string the template
receives (message contents, names, tool call arguments, tool definitions, dict keys) is
replaced with a private-use marker character that none of those strings contains; the
rendered text is split at the markers; template text is tokenized with ``parse_special``
and each neutralised occurrence as plain text, never as a guarded token.

Guarded: every token llama.cpp matches as special only under ``parse_special`` (CONTROL and
UNKNOWN attributes), and USER_DEFINED tokens (which llama.cpp matches even in plain text)
that the template writes or that look like markers (``<|...|>``, ``[PAD1]``): Command R's
``<|START_OF_TURN_TOKEN|>``, Qwen's ``<tool_call>``. Other USER_DEFINED tokens (whitespace
runs) are ordinary text. A client string ending with the start of a guarded text, or starting
with its end, is cut there too, so it cannot complete a marker with the template's text.

A request whose strings hold none of this is tokenized exactly as before, in one call.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from enclave_backend.llama_runtime import LlamaRuntime, SpecialToken

# Supplementary Private Use Area-A: no tokenizer or template gives these a meaning.
_MARKER_FIRST = 0xF0000
_MARKER_LAST = 0xFFFFD
_PRIVATE_USE = re.compile("[\U000f0000-\U000ffffd]")
_MARKER_LIKE = re.compile(r"<\|.*\|>|<｜.*｜>|\[[A-Z][A-Z0-9_]*\]")


def _guarded(token: SpecialToken, template_source: str) -> bool:
    if not token.text:
        return False
    if token.control or token.unknown:
        return True
    if not token.user_defined or len(token.text) < 3 or any(c.isspace() for c in token.text):
        return False
    return token.text in template_source or _MARKER_LIKE.fullmatch(token.text) is not None


@dataclass
class _Markers:
    """Marker characters for one request: none occurs in what the template receives."""

    taken: set[str]
    by_text: dict[str, str]
    next_code: int = _MARKER_FIRST

    def fresh(self) -> str:
        while self.next_code <= _MARKER_LAST:
            char = chr(self.next_code)
            self.next_code += 1
            if char not in self.taken:
                return char
        raise ValueError("no free marker character")  # > 65k distinct private-use chars


class PromptTokenizer:
    """Renders and tokenizes prompts for one runtime and chat template source."""

    def __init__(self, runtime: LlamaRuntime, template_source: str) -> None:
        self._runtime = runtime
        self._template_source = template_source
        guarded = [t for t in runtime.special_tokens() if _guarded(t, template_source)]
        self.guarded_ids = frozenset(t.id for t in guarded)
        self.guarded_texts = frozenset(t.text for t in guarded)
        texts = sorted(self.guarded_texts, key=len, reverse=True)  # llama.cpp: longest first
        self._pattern = re.compile("|".join(map(re.escape, texts))) if texts else None
        self._prefixes = frozenset(t[:k] for t in texts for k in range(1, len(t)))
        self._suffixes = frozenset(t[k:] for t in texts for k in range(1, len(t)))
        self._longest = max(map(len, texts), default=0)

    # -- neutralising client strings -----------------------------------------------------
    def neutralise(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, str | None]]:
        """Messages and tools with guarded texts replaced by markers, and what each marker
        stands for (``None``: a cut between a client string and its surroundings)."""
        taken: set[str] = set(_PRIVATE_USE.findall(self._template_source))
        for text in _strings((messages, tools)):
            taken.update(_PRIVATE_USE.findall(text))
        markers = _Markers(taken, {})
        cut: list[str] = []

        def rewrite(text: str, cuttable: bool) -> str:
            if self._pattern is not None and self._pattern.search(text):
                text = self._pattern.sub(lambda m: self._marker(markers, m.group()), text)
            if not cuttable:
                return text
            if not cut and self._needs_cut(text):
                cut.append(markers.fresh())
            if cut:
                if self._ends_with_prefix(text):
                    text += cut[0]
                if self._starts_with_suffix(text):
                    text = cut[0] + text
            return text

        new_messages = [_rewrite_value(m, rewrite) for m in messages]
        new_tools = [_rewrite_value(t, rewrite) for t in tools] if tools is not None else None
        meaning: dict[str, str | None] = {m: t for t, m in markers.by_text.items()}
        if cut:
            meaning[cut[0]] = None
        return new_messages, new_tools, meaning

    def _marker(self, markers: _Markers, text: str) -> str:
        if text not in markers.by_text:
            markers.by_text[text] = markers.fresh()
        return markers.by_text[text]

    def _needs_cut(self, text: str) -> bool:
        return self._ends_with_prefix(text) or self._starts_with_suffix(text)

    def _lengths(self, text: str) -> range:
        return range(1, min(len(text), self._longest - 1) + 1)

    def _ends_with_prefix(self, text: str) -> bool:
        return any(text[-k:] in self._prefixes for k in self._lengths(text))

    def _starts_with_suffix(self, text: str) -> bool:
        return any(text[:k] in self._suffixes for k in self._lengths(text))

    # -- rendered text -> tokens ------------------------------------------------------------
    def tokenize(self, rendered: str, meaning: dict[str, str | None]) -> list[int]:
        runtime = self._runtime
        bos = runtime.token_text(runtime.bos_token)
        add_bos = runtime.add_bos and not (bos and rendered.startswith(bos))
        if not meaning or not any(m in rendered for m in meaning):
            return runtime.tokenize(rendered, add_special=add_bos, parse_special=True)
        # What llama_tokenize's add_special would add around the whole text, added once.
        tokens: list[int] = [runtime.bos_token] if add_bos else []
        split = re.compile("(" + "|".join(map(re.escape, meaning)) + ")")
        for i, piece in enumerate(split.split(rendered)):
            if i % 2 == 0:
                if piece:
                    tokens += runtime.tokenize(piece, add_special=False, parse_special=True)
            else:
                text = meaning[piece]
                if text is not None:
                    tokens += self.as_text(text)
        if add_bos and runtime.add_eos:
            tokens.append(runtime.eos_token)
        return tokens

    def as_text(self, text: str) -> list[int]:
        """``text`` as plain text tokens, none of them a guarded token."""
        tokens = self._runtime.tokenize(text, add_special=False, parse_special=False)
        if len(text) < 2 or not self.guarded_ids.intersection(tokens):
            return tokens
        half = len(text) // 2
        return self.as_text(text[:half]) + self.as_text(text[half:])


@functools.lru_cache(maxsize=4)
def prompt_tokenizer(runtime: LlamaRuntime, template_source: str) -> PromptTokenizer:
    return PromptTokenizer(runtime, template_source)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _rewrite_value(value: Any, rewrite: Callable[[str, bool], str]) -> Any:
    """A copy with each string rewritten; keys and roles, which templates compare, uncut."""
    if isinstance(value, str):
        return rewrite(value, True)
    if isinstance(value, dict):
        rewritten = {}
        for key, item in value.items():
            uncut = key == "role" and isinstance(item, str)
            new_key = rewrite(key, False) if isinstance(key, str) else key
            rewritten[new_key] = rewrite(item, False) if uncut else _rewrite_value(item, rewrite)
        return rewritten
    if isinstance(value, list | tuple):
        return [_rewrite_value(v, rewrite) for v in value]
    return value

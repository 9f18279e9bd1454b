"""An incremental reader of model output: text in, content and tool-call deltas out.

A format's parser is written as a generator program that asks for one character at a time
(``c = yield``; ``END`` once the output is over) and reports what it read through
``ParserOutput``. ``StreamParser`` drives the program: ``feed`` takes whatever text a decode
step produced (any split, even inside an escape or a marker) and returns the deltas that are
certain by now, so a stream and a whole completion give the same result. A program may give
characters back (``unread``) after looking ahead, as the Llama 3 format does at its start.

The helpers below read the JSON the grammars produce: strings (decoded as they arrive),
values passed through raw (tool arguments), and ``{"name": ..., "arguments": ...}`` call
objects in any key order, tolerant of whitespace.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator

from enclave_backend.tools.events import ArgumentsDelta, CallStarted, ContentDelta, ParsedDelta

END = ""  # sent once the model's output is over
WHITESPACE = " \t\r\n"
Reader = Generator[None, str, str]  # a helper: consumes characters, returns a lookahead
Program = Generator[None, str, None]

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class ParserOutput:
    """Collects deltas; holds whitespace-only content back until real text follows it, so
    the blank lines a model writes around its calls never become content."""

    def __init__(self) -> None:
        self._deltas: list[ParsedDelta] = []
        self._held_space = ""
        self._content_started = False
        self.calls = 0
        self.pending: deque[str] = deque()

    def unread(self, text: str) -> None:
        """The program gives ``text`` back: it is read again before any new input."""
        self.pending.extendleft(reversed(text))

    def content(self, text: str) -> None:
        if not text:
            return
        if not text.strip(WHITESPACE):
            self._held_space += text
            return
        if self._held_space and self._content_started:
            text = self._held_space + text
        self._held_space = ""
        stripped = text if self._content_started else text.lstrip(WHITESPACE)
        trailing = len(stripped) - len(stripped.rstrip(WHITESPACE))
        if trailing:
            self._held_space = stripped[len(stripped) - trailing :]
            stripped = stripped[: len(stripped) - trailing]
        self._content_started = True
        self._append(ContentDelta(stripped))

    def call(self, name: str) -> int:
        self._held_space = ""
        index = self.calls
        self.calls += 1
        self._deltas.append(CallStarted(index, name))
        return index

    def arguments(self, index: int, text: str) -> None:
        if text:
            self._append(ArgumentsDelta(index, text))

    def _append(self, delta: ContentDelta | ArgumentsDelta) -> None:
        last = self._deltas[-1] if self._deltas else None
        if isinstance(delta, ContentDelta) and isinstance(last, ContentDelta):
            self._deltas[-1] = ContentDelta(last.text + delta.text)
        elif (
            isinstance(delta, ArgumentsDelta)
            and isinstance(last, ArgumentsDelta)
            and last.index == delta.index
        ):
            self._deltas[-1] = ArgumentsDelta(delta.index, last.text + delta.text)
        else:
            self._deltas.append(delta)

    def take(self) -> list[ParsedDelta]:
        deltas, self._deltas = self._deltas, []
        return deltas


class StreamParser:
    """Drives one format program over one choice's output."""

    def __init__(self, program: Callable[[ParserOutput], Program]) -> None:
        self._out = ParserOutput()
        self._program = program(self._out)
        self._done = False
        next(self._program)

    @property
    def calls(self) -> int:
        return self._out.calls

    def feed(self, text: str) -> list[ParsedDelta]:
        self._out.pending.extend(text)
        self._run()
        return self._out.take()

    def finish(self) -> list[ParsedDelta]:
        self._run()
        for _ in range(64):  # a program may ask again after END (after looking ahead)
            if self._done:
                break
            self._send(END)
            self._run()
        return self._out.take()

    def _run(self) -> None:
        while self._out.pending and not self._done:
            self._send(self._out.pending.popleft())

    def _send(self, char: str) -> None:
        try:
            self._program.send(char)
        except StopIteration:
            self._done = True


def skip_space(c: str) -> Reader:
    while c and c in WHITESPACE:
        c = yield
    return c


def expect_literal(c: str, literal: str) -> Generator[None, str, bool]:
    """Consumes ``literal`` starting at ``c``; False at the first character that differs."""
    for i, want in enumerate(literal):
        if i:
            c = yield
        if c != want:
            return False
    return True


def json_string(emit: Callable[[str], None]) -> Generator[None, str, bool]:
    """Decodes a JSON string whose opening quote was read; True once it closed."""
    while True:
        c = yield
        if c == END:
            return False
        if c == '"':
            return True
        if c != "\\":
            emit(c)
            continue
        e = yield
        if e == END:
            return False
        if e != "u":
            emit(_ESCAPES.get(e, e))
            continue
        code = yield from _hex4()
        if code is None:
            return False
        if 0xD800 <= code < 0xDC00:  # a surrogate pair arrives as two escapes
            if (yield) != "\\" or (yield) != "u":
                return False
            low = yield from _hex4()
            if low is None:
                return False
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        emit(chr(code) if code < 0xD800 or code >= 0xE000 else "\ufffd")


def _hex4() -> Generator[None, str, int | None]:
    digits = ""
    for _ in range(4):
        c = yield
        if c == END or c not in "0123456789abcdefABCDEF":
            return None
        digits += c
    return int(digits, 16)


def raw_value(c: str, emit: Callable[[str], None]) -> Reader:
    """Passes one JSON value starting at ``c`` through as text; returns the next character."""
    if c == '"':
        emit(c)
        yield from _raw_string(emit)
        return (yield)
    if c in "{[":
        depth = 0
        while c != END:
            emit(c)
            if c == '"':
                if not (yield from _raw_string(emit)):
                    return END
            elif c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return (yield)
            c = yield
        return END
    while c != END and c not in ",}] \t\r\n":
        emit(c)
        c = yield
    return c


def _raw_string(emit: Callable[[str], None]) -> Generator[None, str, bool]:
    while True:
        c = yield
        if c == END:
            return False
        emit(c)
        if c == "\\":
            e = yield
            if e == END:
                return False
            emit(e)
        elif c == '"':
            return True


def call_object(
    c: str, out: ParserOutput, *, argument_keys: frozenset[str] = frozenset({"arguments"})
) -> Generator[None, str, tuple[bool, str]]:
    """Reads ``{"name": ..., "arguments": {...}}`` starting at ``c`` (other keys skipped).

    Returns (whether a call was read whole, the next character). Arguments that arrive
    before the name are held until the name is known."""
    if c != "{":
        return False, c
    index: int | None = None
    early: list[str] = []
    while True:
        c = yield from skip_space((yield))
        if c == "}":
            break
        if c != '"':
            return False, c
        key_parts: list[str] = []
        if not (yield from json_string(key_parts.append)):
            return False, END
        c = yield from skip_space((yield))
        if c != ":":
            return False, c
        c = yield from skip_space((yield))
        key = "".join(key_parts)
        if key == "name" and c == '"' and index is None:
            name: list[str] = []
            if not (yield from json_string(name.append)):
                return False, END
            index = out.call("".join(name))
            out.arguments(index, "".join(early))
            c = yield
        elif key in argument_keys:
            c = yield from _arguments(c, out, index, early)
        else:
            c = yield from raw_value(c, lambda _: None)
        c = yield from skip_space(c)
        if c == "}":
            break
        if c != ",":
            return False, c
    if index is None:
        return False, (yield)
    return True, (yield)


def _arguments(c: str, out: ParserOutput, index: int | None, early: list[str]) -> Reader:
    def emit(text: str) -> None:
        if index is None:
            early.append(text)
        else:
            out.arguments(index, text)

    if c == '"':  # arguments sent as a JSON string holding JSON: pass its text on
        if not (yield from json_string(emit)):
            return END
        return (yield)
    return (yield from raw_value(c, emit))


def rest_as_content(c: str, out: ParserOutput) -> Program:
    """Everything from ``c`` on is plain content (the output left the expected shape)."""
    while c != END:
        out.content(c)
        c = yield

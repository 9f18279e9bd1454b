"""A decoded view of text that carries JSON string escapes, for scanning what a reader sees.

Tool-call ``arguments`` that are not valid JSON (and any string with ``\\u`` escapes) reach
a provider that may decode ``\\u0040`` into ``@`` and so read a value the gateway never saw.
The stage scans the decoded shadow too, and masks whole whitespace-delimited tokens of the
original text wherever the shadow holds a finding. Percent and base64 encodings are the
detector's business, not this module's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ESCAPE = re.compile(r'\\(u[0-9A-Fa-f]{4}|["\\/bfnrt])')
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class ShadowText:
    """``text`` decoded; ``origin[i]`` is where shadow character ``i`` starts in the original."""

    text: str
    origin: list[int]
    original_length: int

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        first = self.origin[start] if start < len(self.origin) else self.original_length
        last = self.origin[end] if end < len(self.origin) else self.original_length
        return first, last


def needs_decoding(text: str) -> bool:
    return "\\" in text and _ESCAPE.search(text) is not None


def decode_escapes(text: str) -> ShadowText | None:
    """The decoded view of ``text``, or None when it carries no JSON string escapes."""
    if not needs_decoding(text):
        return None
    out: list[str] = []
    origin: list[int] = []
    cursor = 0
    matches = list(_ESCAPE.finditer(text))
    index = 0
    while index < len(matches):
        match = matches[index]
        for position in range(cursor, match.start()):
            out.append(text[position])
            origin.append(position)
        code = match.group(1)
        end = match.end()
        if code[0] == "u":
            value = int(code[1:], 16)
            following = matches[index + 1] if index + 1 < len(matches) else None
            if (
                0xD800 <= value < 0xDC00
                and following is not None
                and following.start() == end
                and following.group(1)[0] == "u"
                and 0xDC00 <= int(following.group(1)[1:], 16) < 0xE000
            ):
                low = int(following.group(1)[1:], 16)
                char = chr(0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00))
                end = following.end()
                index += 1
            elif 0xD800 <= value < 0xE000:
                char = "\ufffd"  # a lone surrogate decodes to nothing readable
            else:
                char = chr(value)
        else:
            char = _SIMPLE[code]
        out.append(char)
        origin.append(match.start())
        cursor = end
        index += 1
    for position in range(cursor, len(text)):
        out.append(text[position])
        origin.append(position)
    return ShadowText("".join(out), origin, len(text))


def token_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` widened to the whitespace-delimited token(s) of ``text`` it touches."""
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return start, end

"""The text a reader sees, for scanning: invisible and look-alike characters taken out.

A model reads straight through a zero-width space, a soft hyphen or a right-to-left override,
and reads a fullwidth ``４`` or ``＠`` as ``4`` and ``@``. So detection also runs on a view with
format characters removed, compatibility forms folded (NFKC: fullwidth, non-breaking spaces,
``﹫``), dashes made hyphens, and combining marks stripped from ASCII letters and digits; each
finding in the view maps back to the original span it came from.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

_DASHES = dict.fromkeys(
    map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-"
)


@dataclass(frozen=True)
class NormalizedView:
    text: str
    origin: list[int]  # origin[i]: index in the original of view character i
    original_length: int

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        first = self.origin[start] if start < len(self.origin) else self.original_length
        last = self.origin[end - 1] + 1 if 0 < end <= len(self.origin) else first
        return first, max(first, last)


def normalized_view(text: str) -> NormalizedView | None:
    """The reader's view of ``text``, or None when it would be the same text."""
    if text.isascii():
        return None
    out: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if category == "Cf":
            continue  # zero-width characters, soft hyphens, bidirectional overrides
        if category == "Mn" and out and out[-1].isascii() and out[-1].isalnum():
            continue  # a combining mark on an ASCII letter or digit
        folded = unicodedata.normalize("NFKC", char).translate(_DASHES)
        for piece in folded:
            out.append(piece)
            origin.append(index)
    view = "".join(out)
    return None if view == text else NormalizedView(view, origin, len(text))

"""Turn a sequence's sampled tokens into the text deltas a client receives.

Two problems sit between tokens and text: a UTF-8 character may be split over several
tokens, and a stop string may be split over several tokens. ``CompletionText`` handles
both: it emits only complete characters, holds back exactly the tail that could still
become a stop string, and never emits the stop string itself.

It also counts characters, so a token's place in the text is known: ``decoded`` is how
many characters the tokens pushed so far decoded to (held-back text included), ``emitted``
how many of them were returned. What is emitted is always a prefix of what was decoded.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


def _longest_partial_stop(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop."""
    best = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:length]):
                best = length
                break
    return best


class CompletionText:
    """Accumulates token bytes; ``push`` returns the text that is safe to emit now."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False
        self.decoded = 0
        self.emitted = 0

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; returns emit-ready text (possibly empty)."""
        if self.stopped:
            return ""
        new = self._decoder.decode(piece)
        self.decoded += len(new)
        return self._emit(self._held + new)

    def _emit(self, text: str) -> str:
        if not self._stops:
            self._held = ""
        else:
            cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
            if cut >= 0:
                self.stopped = True
                self._held = ""
                text = text[:cut]
            else:
                keep = _longest_partial_stop(text, self._stops)
                self._held = text[len(text) - keep :] if keep else ""
                text = text[: len(text) - keep]
        self.emitted += len(text)
        return text

    def finish(self) -> str:
        """Flush what was held back once generation ended without a stop string."""
        if self.stopped:
            return ""
        new = self._decoder.decode(b"", final=True)
        self.decoded += len(new)
        tail = self._held + new
        self._held = ""
        self.emitted += len(tail)
        return tail

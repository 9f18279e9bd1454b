"""Turn a sequence's sampled tokens into the text deltas a client receives.

Two problems sit between tokens and text: a UTF-8 character may be split over several
tokens, and a stop string may be split over several tokens. ``CompletionText`` handles
both: it emits only complete characters, holds back exactly the tail that could still
become a stop string, and never emits the stop string itself.
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

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; returns emit-ready text (possibly empty)."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(piece)
        if not self._stops:
            self._held = ""
            return text
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = _longest_partial_stop(text, self._stops)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def finish(self) -> str:
        """Flush what was held back once generation ended without a stop string."""
        if self.stopped:
            return ""
        tail = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return tail

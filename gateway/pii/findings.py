"""A finding is a span of text and the entity type it holds; overlapping findings merge."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    entity_type: str
    score: float

    def shifted(self, offset: int) -> Finding:
        return Finding(self.start + offset, self.end + offset, self.entity_type, self.score)


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """Union of overlapping spans; the merged span keeps the highest-scoring type."""
    merged: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            best = last if last.score >= f.score else f
            merged[-1] = Finding(last.start, max(last.end, f.end), best.entity_type, best.score)
        else:
            merged.append(f)
    return merged

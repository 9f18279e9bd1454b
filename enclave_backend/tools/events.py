"""What a tool-call parser reads out of a model's text, in the order it appears."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ContentDelta:
    """Text for the message's ``content``."""

    text: str


@dataclass(frozen=True)
class CallStarted:
    """Call number ``index`` (0-based, in order) names the declared function ``name``."""

    index: int
    name: str


@dataclass(frozen=True)
class ArgumentsDelta:
    """More of the JSON text of call ``index``'s arguments."""

    index: int
    text: str


ParsedDelta = ContentDelta | CallStarted | ArgumentsDelta

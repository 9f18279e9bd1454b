"""The name gazetteers: given names and surnames of many scripts, with what else each word is.

``data/names.tsv`` (rebuilt by ``data/build_gazetteers.py``) flags every token: F given name,
L surname, W common English word, D rare English word, X common word in another language,
P big place. ``data/not_names.txt`` lists products, assistants and brands that are names
somewhere; ``data/vocabulary.txt.gz`` holds the ordinary words of seven languages, so a
capitalised word outside it and outside the gazetteer is most likely a name.
"""

from __future__ import annotations

import functools
import gzip
import unicodedata
from dataclasses import dataclass
from importlib import resources

PARTICLES = frozenset(
    [
        "de",
        "da",
        "di",
        "do",
        "dos",
        "das",
        "del",
        "della",
        "der",
        "den",
        "van",
        "von",
        "la",
        "le",
        "du",
        "des",
        "bin",
        "binti",
        "al",
        "el",
        "ibn",
        "ben",
        "bint",
        "ter",
        "ten",
        "y",
        "e",
        "mc",
        "mac",
        "o",
        "st",
        "af",
        "zu",
        "vom",
        "zum",
        "ó",
        "ní",
        "nic",
        "mhic",
        "ui",
        "d'",
        "l'",
    ]
)


@dataclass(frozen=True)
class Gazetteer:
    flags: dict[str, str]
    not_names: frozenset[str]
    vocabulary: frozenset[str]

    def kind(self, word: str) -> str:
        return self.flags.get(unicodedata.normalize("NFC", word).casefold(), "")

    def unknown(self, word: str) -> bool:
        """Not a known name and not an ordinary word of seven languages: likely a name."""
        folded = unicodedata.normalize("NFC", word).casefold()
        return (
            len(folded) >= 3
            and folded not in self.vocabulary
            and folded not in self.flags
            and folded not in self.not_names
        )


@functools.cache
def gazetteer() -> Gazetteer:
    data = resources.files("gateway.pii") / "data"
    flags: dict[str, str] = {}
    for line in (data / "names.tsv").read_text(encoding="utf-8").splitlines():
        token, _, kind = line.partition("\t")
        flags[token] = kind
    not_names = {
        word.casefold()
        for line in (data / "not_names.txt").read_text(encoding="utf-8").splitlines()
        if not line.startswith("#")
        for word in line.split()
    }
    with gzip.open(str(data / "vocabulary.txt.gz"), "rt", encoding="utf-8") as handle:
        vocabulary = frozenset(handle.read().split())
    return Gazetteer(flags, frozenset(not_names), vocabulary)


def is_name(kind: str) -> bool:
    return "F" in kind or "L" in kind


def clean(kind: str) -> bool:
    """A known name that is not also a common word or a place."""
    return is_name(kind) and not any(flag in kind for flag in "WXPD")


def is_known_name(word: str) -> bool:
    """A given name or surname that is not also a common word, place or product."""
    gaz = gazetteer()
    return clean(gaz.kind(word)) and word.casefold() not in gaz.not_names

"""Person names: gazetteers of given names and surnames in many scripts, plus the context
that makes a word a name (a title, "my name is", a greeting, a neighbouring name).

Why not a statistical NER model on the hot path: spaCy's small English model costs ~6 ms per
short message on one core, misses lowercase names, handles and other scripts, and tags
products and cities as people. Names are mostly *known* names; what varies is how they are
written. So a word is a name when it is a known given name or surname and nothing says it
is something else (a common word, a place, a product), or when the context says it is one
even if it is not known ("Dear Ms Okonkwo-Baptiste").

Ambiguity is decided per word from the gazetteer flags (see ``data/build_gazetteers.py``):
W and X (common words in English or another language), P (a place), and ``not_names.txt``
(products, assistants, brands, calendar words). Such a word is a name only next to another
name or after a cue.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.pii.entities import PERSON
from gateway.pii.findings import Finding
from gateway.pii.recognizers.gazetteer import (
    PARTICLES,
    Gazetteer,
    clean,
    gazetteer,
    is_name,
)
from gateway.pii.recognizers.scripts import HANGUL_WORD, KANA_HAN, cjk_names, hangul_names

# Letters, and the combining marks of scripts that write vowels as marks (Devanagari, ...).
_LETTER = r"(?:[^\W\d_]|[\u0300-\u036f\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u0900-\u0dff\u0e00-\u0e7f])"
_TOKEN = re.compile(rf"{_LETTER}(?:{_LETTER}|['’\-](?={_LETTER}{{2}}))*")
_TITLE = (
    r"(?:mr|mrs|ms|miss|mx|dr|prof|professor|sir|madam|dame|lord|lady|herr|frau|fräulein|"
    r"monsieur|madame|mademoiselle|mme|mlle|señor|señora|señorita|sr|sra|srta|don|doña|"
    r"signor|signora|signorina|sig|sig\.ra|dott|dott\.ssa|dhr|mevr|mevrouw|meneer|shri|smt|"
    r"sri|hr|fr|ing|mag|dipl|doctor|nurse|officer|agent|detective|judge|rev|fr|pastor|"
    r"rabbi|imam|sheikh|capt|captain|sgt|lt|col|gen)\.?"
)
# After these the next capitalised word is a name even if no gazetteer knows it.
_STRONG_CUE = re.compile(
    rf"(?i)(?:\b{_TITLE}|\bm\.|\bmy name is|\bmy name's|\bname\s*[:=]|\bnamed|\bcall me|"
    r"\bi am called|\bje m'appelle|\bje m’appelle|\bmon nom est|\bich heiße|\bich heisse|"
    r"\bmein name ist|\bme llamo|\bmi nombre es|\bmi chiamo|\bil mio nome è|\bmeu nome é|"
    r"\bme chamo|\bmijn naam is|\bik heet|\bdear|\bcher|\bchère|\bliebe|\blieber|"
    r"\bsehr geehrte[rs]?|\bestimad[oa]|\bquerid[oa]|\bcaro|\bcara|\bgentile|\bbeste|"
    r"\bsincerely|\bregards|\bcheers|\bthanks|\bthank you|\bbest|\bcordialement|\bgrüße|"
    r"\bgruß|\bsaludos|\bsaluti|\batenciosamente|\bgroeten|\bsigned|\bsignature|\bauthor|"
    r"\bassignee|\breporter|\breviewer|\battn|\bc/o|\b(?:from|to|cc|bcc)\s*:)\s*[:,]?\s*$"
)
# After these a *known* name counts even when it is also a common word ("ask Grace").
_WEAK_CUE = re.compile(
    r"(?i)\b(?:i'm|i’m|im|i am|this is|it's|its|hi|hello|hey|hiya|yo|ask|tell|told|asked|"
    r"with|by|for|and|or|met|meet|called|call|email|emailed|ping|pinged|text|texted|cc|"
    r"patient|customer|client|employee|colleague|coworker|manager|agent|user|member|"
    r"candidate|applicant|tenant|landlord|contact|spouse|wife|husband|partner|son|"
    r"daughter|mother|father|mom|mum|dad|brother|sister|friend|boss|nurse|doctor|uncle|"
    r"aunt|cousin|grandma|grandpa|neighbour|neighbor|teacher|student|je suis|ich bin|soy|"
    r"sono|sou|ik ben|bonjour|salut|hallo|hola|ciao|olá|oi|merci|danke|gracias|grazie|"
    r"obrigad[oa]|bedankt|avec|mit|con|com|met|et|und|y|e|en|señor|madame|monsieur)\s*[:,]?\s*$"
)
_TITLE_BEFORE = re.compile(rf"(?i)\b{_TITLE}\s*$")
# What people do right after their name: "Nkechi says", "Minjun will call", "Davide's".
_AFTER_CUE = re.compile(
    r"(?:['’]s\b|\s+(?:says|said|asked|asks|wrote|writes|told|tells|thinks|thought|wants|"
    r"wanted|replied|mentioned|confirmed|agreed|called|calls|emailed|texted|joined|left|"
    r"signed|booked|paid|is running late|will call|will get|will be|is coming|are coming|"
    r"was born|is set up|has been|dit|a dit|sagt|hat gesagt|dice|ha detto|disse|zegt)\b)"
)
_SPELL_CUE = re.compile(
    r"(?i)\b(?:spell(?:s|ed|t|ing)?|s'écrit|s’écrit|buchstabiert|se escribe|si scrive|"
    r"se escreve|gespeld|letters?)\b[^\n]{0,24}$"
)
_SPELLED = re.compile(
    r"(?<![\w\-])(?P<first>[A-Za-z])(?P<sep>\s?[\-.]\s?|\s|,\s)[A-Za-z](?:(?P=sep)[A-Za-z]){2,24}"
    r"(?![\w\-])"
)
_HANDLE = re.compile(
    r"(?<![\w@.\-/\\:])@?(?P<handle>[A-Za-z]{1,20}(?:[._\-][A-Za-z]{2,20}){1,3}\d{0,4}|"
    r"[A-Za-z]{3,20}\d{1,4})(?![\w@\-/]|\.[A-Za-z])"
)
_MENTION = re.compile(r"(?<![\w@.])@(?P<handle>[A-Za-z][A-Za-z0-9_.\-]{1,30}[A-Za-z0-9])")
_FUNCTION_WORDS = frozenset(
    "the a an and or of to in on at for with by from is are was be as it this that these "  # noqa: SIM905
    "those our your my his her their its we you they he she not no yes if so but than then "
    "le la les un une des du de et ou der die das ein eine und oder el los las y o lo il "
    "gli di e het een en van".split()
)


def _never_a_name(word: _Word) -> bool:
    return word.text.casefold() in _FUNCTION_WORDS or (word.text.isupper() and len(word.text) <= 3)


_CONJUNCTIONS = frozenset({"and", "or", "et", "und", "y", "e", "en", "&"})


@dataclass
class _Word:
    start: int
    end: int
    text: str
    kind: str
    not_name: bool
    unknown: bool

    @property
    def cap(self) -> bool:
        return self.text[0].isupper()

    @property
    def lower(self) -> bool:
        return self.text.islower()


class NameRecognizer:
    entity_types = frozenset({PERSON})

    def __init__(self) -> None:
        self._gaz = gazetteer()

    def _word(self, match: re.Match[str]) -> _Word:
        text = match.group(0)
        kind = self._gaz.kind(text)
        if not kind and "-" in text:  # "Jean-Pierre", "Smith-Jones"
            parts = [self._gaz.kind(p) for p in text.split("-")]
            if all(is_name(k) for k in parts):
                kind = "".join(sorted(set("".join(parts)) - set("WXPD")))
        unknown = not kind and not text.isupper() and self._gaz.unknown(text)
        return _Word(
            match.start(), match.end(), text, kind, text.casefold() in self._gaz.not_names, unknown
        )

    def find(self, text: str) -> Iterator[Finding]:
        words = [self._word(m) for m in _TOKEN.finditer(text)]
        yield from self._runs(text, words)
        yield from self._lowercase(text, words)
        yield from self._handles(text)
        yield from self._spelled(text)
        if KANA_HAN.search(text):
            yield from cjk_names(text, self._gaz)
        if max(text) >= "\uac00" and HANGUL_WORD.search(text):
            yield from hangul_names(text, self._gaz)

    # -- capitalised words and runs of them ----------------------------------------------
    def _runs(self, text: str, words: list[_Word]) -> Iterator[Finding]:
        index = 0
        while index < len(words):
            word = words[index]
            if not (word.cap or self._uncased(word)):
                index += 1
                continue
            run = [word]
            cursor = index + 1
            while cursor < len(words):
                gap = text[run[-1].end : words[cursor].start]
                nxt = words[cursor]
                if gap not in {" ", "-", " - "} and not re.fullmatch(r"\.\s?", gap):
                    break
                if gap.startswith(".") and len(run[-1].text) > 1:
                    break  # a full stop ends the sentence; only an initial ("J.") continues
                if nxt.cap or self._uncased(nxt):
                    run.append(nxt)
                elif nxt.text.casefold() in PARTICLES and cursor + 1 < len(words):
                    after = words[cursor + 1]
                    if after.cap and text[nxt.end : after.start] == " ":
                        run += [nxt, after]
                        cursor += 1
                    else:
                        break
                else:
                    break
                cursor += 1
            yield from self._judge_run(text, run)
            index = cursor

    @staticmethod
    def _uncased(word: _Word) -> bool:
        """Scripts without case (Arabic, Hebrew, Devanagari, ...), but not CJK."""
        first = word.text[0]
        return not first.isupper() and not first.islower() and not KANA_HAN.match(first)

    def _judge_run(self, text: str, run: list[_Word]) -> Iterator[Finding]:
        # Function words and short acronyms ("The", "SHA", "API") never make a name, even
        # where some locale has them as one; leading ordinary words ("Dear") are not it.
        while run and (
            _never_a_name(run[0])
            or (not is_name(run[0].kind) and not self._unknownish(run[0], len(run)))
        ):
            run = run[1:]
        if not run:
            return
        before = text[max(0, run[0].start - 40) : run[0].start]
        if len(run) >= 2:
            # A known name counts 2 (1 if it is also a word or place), an unknown
            # capitalised word 1, and so does any word right after a given name:
            # "Margaret Thornton", "Kim Eunji", "Aruzhan Seitkali", "Matteo Fontana".
            scores = []
            for i, w in enumerate(run):
                if w.text.isupper() and len(w.text) <= 3:
                    scores.append(0)  # an acronym: "SHA", "API", "UPS"
                elif w.not_name:
                    # "Tiffany Miller", "Claude Dupont": a brand that is also a given name
                    # still counts next to a name.
                    scores.append(1 if "F" in w.kind else 0)
                elif clean(w.kind):
                    scores.append(2)
                elif (
                    is_name(w.kind)
                    or self._unknownish(w, len(run))
                    or (
                        i
                        and "F" in run[i - 1].kind
                        and clean(run[i - 1].kind)
                        and not run[i - 1].not_name
                    )
                ):
                    scores.append(1)
                else:
                    scores.append(0)
            while len(run) > 1 and scores[-1] == 0:
                run, scores = run[:-1], scores[:-1]
            branded = any(w.not_name and s for w, s in zip(run, scores, strict=True))
            known = any(is_name(w.kind) and not w.not_name for w in run)
            if (
                len(run) >= 2
                and sum(scores) >= 2
                and any(scores[i] for i in (0, -1))
                and (known or not branded)
            ):
                yield Finding(run[0].start, run[-1].end, PERSON, 0.8)
                return
        for word in run:
            if self._singleis_name(text, word):
                yield Finding(word.start, word.end, PERSON, 0.7)
            elif self._cued_alone(text, word, before):
                yield Finding(word.start, word.end, PERSON, 0.65)

    def _cued_alone(self, text: str, word: _Word, before: str) -> bool:
        """A single word the context makes a name: "ask Okonkwo", "Nkechi says", "Dr. Galli"."""
        after = _AFTER_CUE.match(text, word.end) is not None
        if self._unknownish(word, 1):
            return bool(after or _STRONG_CUE.search(before) or _PERSON_CUE.search(before))
        if word.not_name:
            return False
        if after and is_name(word.kind) and "P" not in word.kind:
            return True
        return bool(_TITLE_BEFORE.search(before)) and "W" not in word.kind and len(word.text) >= 2

    def _unknownish(self, word: _Word, run_length: int) -> bool:
        """An unknown capitalised word, or a word in a script without case (Arabic, Hebrew,
        Devanagari, ...) standing in a short run: both are most likely names."""
        if word.unknown and word.cap:
            return True
        first = word.text[0]
        return (
            run_length <= 4
            and not first.isupper()
            and not first.islower()
            and not KANA_HAN.match(first)
            and word.text.casefold() not in self._gaz.vocabulary
            and len(word.text) >= 2
        )

    def _singleis_name(self, text: str, word: _Word) -> bool:
        if not is_name(word.kind) or len(word.text) < 2:
            return False
        before = text[max(0, word.start - 40) : word.start]
        if _STRONG_CUE.search(before):
            return not word.not_name
        if word.not_name:
            return False
        if word.text.isupper() and len(word.text) < 4:
            return False
        weak = _WEAK_CUE.search(before) is not None
        if "P" in word.kind:
            return _PERSON_CUE.search(before) is not None
        if "W" in word.kind or "D" in word.kind:
            return weak
        return True

    # -- lowercase names in casual text --------------------------------------------------
    def _lowercase(self, text: str, words: list[_Word]) -> Iterator[Finding]:
        flagged: set[int] = set()
        for i, word in enumerate(words):
            if not word.lower or len(word.text) < 3 or word.not_name:
                continue
            if _in_identifier(text, word.start, word.end):
                continue
            before = text[max(0, word.start - 30) : word.start]
            if clean(word.kind):
                previous = words[i - 1] if i else None
                given_before = (
                    previous is not None
                    and previous.lower
                    and "F" in previous.kind
                    and text[previous.end : word.start] == " "
                )
                if "F" in word.kind or given_before or _WEAK_CUE.search(before):
                    flagged.add(i)
            elif (is_name(word.kind) and "P" not in word.kind and _STRONG_CUE.search(before)) or (
                word.unknown and _PERSON_CUE.search(before)
            ):
                flagged.add(i)
        # Two words listed together, one a name and the other a name or unknown, are both
        # names: "dinara and hamza", "sarah & tom".
        for i in range(len(words) - 1):
            a, j = words[i], i + 1
            if words[j].text.casefold() in _CONJUNCTIONS and text[a.end : words[j].start] == " ":
                j += 1
            if j >= len(words):
                continue
            b = words[j]
            if not (a.lower and b.lower) or a.not_name or b.not_name:
                continue
            if not re.fullmatch(r", |,? (?:and|&|or|et|und|y|e|en) ", text[a.end : b.start]):
                continue
            pair = (a, b)
            if (
                all((is_name(w.kind) and "P" not in w.kind) or w.unknown for w in pair)
                and any(clean(w.kind) or w.unknown for w in pair)
                and not any(_in_identifier(text, w.start, w.end) for w in pair)
            ):
                flagged |= {i, j}
        for i in sorted(flagged):
            yield Finding(words[i].start, words[i].end, PERSON, 0.6)

    # -- handles, spelled-out names, other scripts ---------------------------------------
    def _handles(self, text: str) -> Iterator[Finding]:
        if (
            "_" in text
            or "." in text
            or "-" in text
            or "@" in text
            or any(c.isdigit() for c in text)
        ):
            for match in _HANDLE.finditer(text):
                if handle_is_name(match.group("handle"), self._gaz):
                    yield Finding(match.start(), match.end(), PERSON, 0.75)
        if "@" in text:
            for match in _MENTION.finditer(text):
                if handle_is_name(match.group("handle"), self._gaz, lenient=True):
                    yield Finding(match.start(), match.end(), PERSON, 0.75)

    def _spelled(self, text: str) -> Iterator[Finding]:
        for match in _SPELLED.finditer(text):
            letters = re.sub(r"[^A-Za-z]", "", match.group(0))
            if not (letters.isupper() or letters.islower()):
                continue
            cue = _SPELL_CUE.search(text[max(0, match.start() - 40) : match.start()])
            dotted = "." in match.group("sep")
            if (len(letters) >= 4 and (cue or not dotted)) or (cue and len(letters) >= 3):
                yield Finding(match.start(), match.end(), PERSON, 0.8)


_PERSON_CUE = re.compile(
    r"(?i)\b(?:i'm|i’m|i am|this is|hi|hello|hey|ask|tell|told|asked|met|emailed|pinged|"
    r"texted|text|ping|remind|thanks|thank you|merci|danke|gracias|grazie|obrigad[oa]|bedankt|"
    r"bonjour|salut|hallo|hola|ciao|olá|oi|cher|chère|liebe|lieber|querid[oa]|caro|cara|"
    r"patient|customer|client|employee|colleague|"
    r"coworker|manager|"
    r"tenant|landlord|spouse|wife|husband|partner|son|daughter|mother|father|mom|mum|dad|"
    r"brother|sister|friend|boss|nurse|doctor|uncle|aunt|cousin)\s*[:,]?\s*$"
)


def _in_identifier(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return before in "_./@#$=:<\\`" or after in "_/@#$=(<`[{" or before.isdigit() or after.isdigit()


def handle_is_name(handle: str, gaz: Gazetteer | None = None, *, lenient: bool = False) -> bool:
    """A user handle built from a name: ``priya_raman``, ``m.thornton``, ``jdoe42``."""
    gaz = gaz or gazetteer()
    core = handle.rstrip("0123456789")
    parts = [p for p in re.split(r"[._\-]", core) if p]
    if not parts or not all(p.isalpha() for p in parts):
        return False  # "usr_4fdccb77", "build-2024": identifiers, not names
    kinds = [gaz.kind(p) for p in parts]
    if any(p.casefold() in gaz.not_names for p in parts):
        return False
    clean_parts = [p for p, k in zip(parts, kinds, strict=True) if len(p) >= 3 and clean(k)]
    named = [p for p, k in zip(parts, kinds, strict=True) if len(p) >= 3 and is_name(k)]
    if len(parts) >= 2:
        plain = [p for p in named if not any(flag in gaz.kind(p) for flag in "WXD")]
        if clean_parts or len(plain) >= 2:
            return True
        # Where a key says a name belongs (a participant's "name"), an unknown word counts.
        return (
            lenient
            and any(gaz.unknown(p) and len(p) >= 4 for p in parts)
            and (
                not any(p.casefold() in gaz.vocabulary and len(p) >= 4 for p in parts)
                or bool(named)
            )
        )
    if lenient and len(core) >= 3:
        word = parts[0] if parts else core
        if clean(gaz.kind(word)):
            return True
        # "jdoe", "msmith": an initial and a surname; "wolfgangoberdorfer": unknown.
        if len(word) >= 4 and "L" in gaz.kind(word[1:]) and clean(gaz.kind(word[1:])):
            return True
        return len(word) >= 5 and word.isalpha() and gaz.unknown(word)
    return False


def name_tokens(value: str) -> list[str]:
    """The words of a found name that identify the person on their own ("Thornton")."""
    gaz = gazetteer()
    out = []
    for match in _TOKEN.finditer(value):
        word = match.group(0)
        folded = word.casefold()
        kind = gaz.kind(word)
        if (
            len(word) >= 3
            and folded not in gaz.vocabulary
            and folded not in gaz.not_names
            and folded not in PARTICLES
            and not any(flag in kind for flag in "WXD")
        ):
            out.append(word)
    return out


def looks_like_person(value: str) -> bool:
    """A short value that is a name: for fields whose key says they hold one."""
    value = value.strip()
    if not value or len(value) > 80 or any(c.isdigit() for c in value):
        return False
    words = value.replace(",", " ").split()
    return 1 <= len(words) <= 6 and all(_TOKEN.fullmatch(w.strip(".")) or w in "-." for w in words)

"""Names in scripts without spaces or case between words: Chinese, Japanese, Korean."""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.pii.entities import PERSON
from gateway.pii.findings import Finding
from gateway.pii.recognizers.gazetteer import Gazetteer

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
KANA_HAN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
_CJK_TITLE_AFTER = re.compile(
    r"^(?:先生|女士|小姐|老师|医生|经理|同学|总|阿姨|叔叔|さん|様|さま|君|くん|ちゃん|先生|氏|殿|씨|님)"
)
_CJK_CUE_BEFORE = re.compile(
    r"(?:我叫|我是|名叫|叫做|姓名[:：]?|名字是|患者|客户|联系人|私は|担当の?|이름은)\s*$"
)
HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]{2,6}")
_KOREAN_PARTICLES = (
    "에게서",
    "에게",
    "께서",
    "씨는",
    "씨가",
    "님은",
    "님이",
    "씨",
    "님",
    "은",
    "는",
    "이",
    "가",
    "을",
    "를",
    "의",
    "도",
    "와",
    "과",
    "께",
)


def cjk_names(text: str, gaz: Gazetteer) -> Iterator[Finding]:
    """Chinese and Japanese names: surname and given name, alone or in running text."""
    for run in HAN.finditer(text):
        chunk, base = run.group(0), run.start()
        before_char = text[base - 1] if base else " "
        after_char = text[run.end()] if run.end() < len(text) else " "
        isolated = not KANA_HAN.match(before_char) and not KANA_HAN.match(after_char)
        if (
            isolated
            and 2 <= len(chunk) <= 4
            and ("L" in gaz.kind(chunk[0]) or "L" in gaz.kind(chunk[:2]))
        ):
            end = run.end()
            # A Japanese name may be written with a space: "佐藤 健", "高橋 大輔".
            spaced = re.match(
                r"[ \u3000]([\u4e00-\u9fff]{1,3})(?![\u3040-\u30ff\u4e00-\u9fff])", text[end:]
            )
            if spaced:
                end += spaced.end()
            yield Finding(base, end, PERSON, 0.75)
            continue
        if isolated and 1 <= len(chunk) <= 3 and "F" in gaz.kind(chunk):
            yield Finding(base, run.end(), PERSON, 0.7)  # a given name alone: "秀英"
            continue
        yield from _names_in_han_text(text, chunk, base, gaz)


def _names_in_han_text(text: str, chunk: str, base: int, gaz: Gazetteer) -> Iterator[Finding]:
    """Inside running Chinese or Japanese text: a surname followed by a known given
    name, or by one or two characters after a cue ("我叫") or before a title ("先生")."""
    i = 0
    while i < len(chunk):
        found = None
        for surname_len in (2, 1):
            surname = chunk[i : i + surname_len]
            if len(surname) < surname_len or "L" not in gaz.kind(surname):
                continue
            rest = chunk[i + surname_len :]
            given = next(
                (rest[:n] for n in (2,) if len(rest) >= n and "F" in gaz.kind(rest[:n])), None
            )
            if given is None:
                cue = _CJK_CUE_BEFORE.search(text[max(0, base + i - 6) : base + i])
                for n in (2, 1):
                    title = _CJK_TITLE_AFTER.match(text[base + i + surname_len + n :])
                    if len(rest) >= n and (cue or title):
                        given = rest[:n]
                        break
            if given is not None:
                found = (base + i, base + i + surname_len + len(given))
                break
        if found:
            yield Finding(found[0], found[1], PERSON, 0.7)
            i = found[1] - base
        else:
            i += 1


def hangul_names(text: str, gaz: Gazetteer) -> Iterator[Finding]:
    """Korean names: a surname syllable and a given name, particles stripped."""
    for match in HANGUL_WORD.finditer(text):
        word = match.group(0)
        for particle in _KOREAN_PARTICLES:
            if word.endswith(particle) and len(word) - len(particle) >= 2:
                word = word[: -len(particle)]
                break
        if 2 <= len(word) <= 4 and "L" in gaz.kind(word[0]):
            given = word[1:]
            isolated = match.end() - match.start() == len(word) and (
                match.start() == 0 or not text[match.start() - 1].isalpha()
            )
            if "F" in gaz.kind(given) or isolated:
                yield Finding(match.start(), match.start() + len(word), PERSON, 0.75)


# Cues that point at a person, not a place: "ask Austin", not "to Austin".

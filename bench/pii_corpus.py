"""Seeded generator of a labelled PII evaluation corpus of chat-completion requests.

Each line of the output is one OpenAI ``/v1/chat/completions`` request body (multi-turn, often
with tools, tool calls and tool results) plus character-offset spans of every piece of personal
data in it.  Two splits are produced from disjoint halves of every template list and value pool:
``dev`` (seed 11) and ``heldout`` (seed 29).  Standard library only; the same command always
writes byte-identical files.

    python -m bench.pii_corpus            # writes bench/data/pii-conversations-{dev,heldout}.jsonl
    python -m bench.pii_corpus --check    # regenerate in memory and compare with the files
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import random
import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.paths import DATA_DIR
from gateway.pii.entities import LABELLED

LABELS = LABELLED
FIELDS = ("content", "tool_result", "tool_arguments", "tool_description", "name")
SPLITS = {"dev": 11, "heldout": 29}
N_POSITIVE = 176
N_NEGATIVE = 36

PER = "PERSON"
EMAIL = "EMAIL_ADDRESS"
PHONE = "PHONE_NUMBER"
SSN = "US_SSN"
CARD = "CREDIT_CARD"
IBAN = "IBAN_CODE"
IP = "IP_ADDRESS"
CRED = "CREDENTIAL"
PASS = "PASSPORT"
MRN = "MEDICAL_RECORD_NUMBER"
DOB = "DATE_OF_BIRTH"
ADDR = "STREET_ADDRESS"


# --------------------------------------------------------------------------------------------
# Tagged text: strings that carry their PII spans with them
# --------------------------------------------------------------------------------------------


class Tag(str):
    """A string that is, as a whole, one PII value of ``label``."""

    label: str

    def __new__(cls, value: str, label: str) -> Tag:
        assert label in LABELS, label
        obj = super().__new__(cls, value)
        obj.label = label
        return obj


class Num:
    """A PII value written as a bare JSON number literal (inside tool arguments/results)."""

    def __init__(self, digits: str, label: str) -> None:
        assert digits.isdigit() and digits[0] != "0", digits
        self.digits = digits
        self.label = label


@dataclass
class Seg:
    """Text plus the (start, end, label) marks of the PII inside it."""

    text: str = ""
    marks: list[tuple[int, int, str]] = field(default_factory=list)

    def __add__(self, other: object) -> Seg:
        o = seg(other)
        n = len(self.text)
        return Seg(self.text + o.text, self.marks + [(s + n, e + n, lab) for s, e, lab in o.marks])

    def __radd__(self, other: object) -> Seg:
        return seg(other) + self


Text = Seg | str


def seg(x: object) -> Seg:
    if isinstance(x, Seg):
        return x
    if isinstance(x, Tag):
        return Seg(str(x), [(0, len(x), x.label)])
    if isinstance(x, Num):
        return Seg(x.digits, [(0, len(x.digits), x.label)])
    return Seg(str(x))


def cat(*parts: object) -> Seg:
    out = Seg()
    for p in parts:
        out = out + p
    return out


def join(sep: str, parts: Sequence[object]) -> Seg:
    out = Seg()
    for i, p in enumerate(parts):
        if i:
            out = out + sep
        out = out + p
    return out


_FMT = string.Formatter()


def F(template: str, **kw: object) -> Seg:
    """``str.format``-like fill of ``{name}`` fields that keeps the marks of tagged values."""
    out = Seg()
    for literal, fname, _spec, _conv in _FMT.parse(template):
        out = out + literal
        if fname is not None:
            out = out + kw[fname]
    return out


def _jstr(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def jdump(obj: Any, indent: int | None = None, level: int = 0) -> Seg:
    """Serialise like ``json.dumps(obj, ensure_ascii=False, indent=indent)``, keeping marks."""
    if isinstance(obj, Num):
        return seg(obj)
    if isinstance(obj, Tag):
        inner = _jstr(str(obj))[1:-1]
        assert inner == str(obj), f"tagged value needs JSON escaping: {obj!r}"
        return Seg(f'"{inner}"', [(1, 1 + len(inner), obj.label)])
    if isinstance(obj, Seg):
        out = Seg('"')
        pos = 0
        for s, e, lab in sorted(obj.marks):
            out = out + _jstr(obj.text[pos:s])[1:-1]
            val = obj.text[s:e]
            assert _jstr(val)[1:-1] == val, f"tagged value needs JSON escaping: {val!r}"
            out = out + Tag(val, lab)
            pos = e
        return out + _jstr(obj.text[pos:])[1:-1] + '"'
    if isinstance(obj, str | bool | int | float) or obj is None:
        return Seg(json.dumps(obj, ensure_ascii=False))
    if isinstance(obj, dict):
        items = [cat(_jstr(k), ": ", jdump(v, indent, level + 1)) for k, v in obj.items()]
        opener, closer = "{", "}"
    else:
        items = [jdump(v, indent, level + 1) for v in obj]
        opener, closer = "[", "]"
    if not items:
        return Seg(opener + closer)
    if indent is None:
        return cat(opener, join(", ", items), closer)
    nl = "\n" + " " * (indent * (level + 1))
    return cat(opener, nl, join("," + nl, items), "\n" + " " * (indent * level), closer)


def plain(obj: Any) -> Any:
    if isinstance(obj, Num):
        return int(obj.digits)
    if isinstance(obj, Seg):
        return obj.text
    if isinstance(obj, Tag):
        return str(obj)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def jtext(obj: Any, indent: int | None = None) -> Seg:
    out = jdump(obj, indent)
    assert out.text == json.dumps(plain(obj), ensure_ascii=False, indent=indent)
    return out


# --------------------------------------------------------------------------------------------
# Context: one split's random generator and its halves of every pool and template list
# --------------------------------------------------------------------------------------------


class Ctx:
    def __init__(self, split: str, seed: int) -> None:
        self.split = split
        self.h = 0 if split == "dev" else 1
        self.rng = random.Random(seed)
        self.pools = {k: v[self.h :: 2] for k, v in POOLS.items()}
        self.cultures = {k: (g[self.h :: 2], s[self.h :: 2]) for k, (g, s) in CULTURES.items()}
        self.scripts = {k: v[self.h :: 2] for k, v in SCRIPT_NAMES.items()}

    def pick(self, items: Sequence[Any]) -> Any:
        """Choose from this split's half of a template list."""
        half = items[self.h :: 2]
        assert half, items
        return self.rng.choice(half)

    def any(self, items: Sequence[Any]) -> Any:
        """Choose from the whole list (format families shared by both splits)."""
        return self.rng.choice(items)

    def pool(self, name: str) -> Any:
        return self.rng.choice(self.pools[name])

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    def chars(self, n: int, alphabet: str) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def shuffled(self, items: Sequence[Any]) -> list[Any]:
        out = list(items)
        self.rng.shuffle(out)
        return out


# --------------------------------------------------------------------------------------------
# Hand-written value pools.  Every list is split in two by position (even -> dev, odd ->
# heldout), so the two splits never share a name, street, city, domain or template.
# --------------------------------------------------------------------------------------------

# culture -> (given names, surnames); "|" separates entries that contain spaces.
_CULTURE_TEXT: dict[str, tuple[str, str]] = {
    "en_us": (
        "Margaret|Brandon|Ashley|Tyler|Courtney|Dustin|Kimberly|Travis|Heather|Derek|Melissa|"
        "Cody|Brittany|Garrett|Shannon|Wesley|Lindsay|Trent|Sarah|Jared",
        "Thornton|Whitaker|Pemberton|Caldwell|Hargrove|McAllister|Sullivan|Brennan|Fitzgerald|"
        "Donnelly|Ramsey|Holloway|Prescott|Abernathy|Langley|Merriweather|Calloway|Dempsey|"
        "Kowalczyk|Ostrowski",
    ),
    "en_uk": (
        "Siobhan|Ciaran|Niamh|Eoin|Aoife|Declan|Fiona|Callum|Morag|Hamish|Gwen|Rhys|Bethan|"
        "Alistair|Imogen|Rupert|Bartholomew|Philippa",
        "O'Sullivan|MacLeod|Gallagher|Kavanagh|Fraser|Buchanan|Ferguson|Llewellyn|Pritchard|"
        "Whitfield|Ashworth|Featherstone|Ogilvy|Cartwright|Hollingsworth|Brannigan|Docherty|"
        "Quigley",
    ),
    "de": (
        "Jürgen|Annegret|Matthias|Sabine|Tobias|Friederike|Wolfgang|Henrike|Lukas|Ursula|Florian|"
        "Gudrun|Maximilian|Katrin|Dietmar|Birgit",
        "Müller|Schröder|Hoffmann|Weißenborn|Krüger|Zimmermann|Vogelsang|Brandt|Oberdorfer|"
        "Lehmann|Nussbaum|Kessler|Dreher|Fuchs|Bauernfeind|Achterberg",
    ),
    "fr": (
        "Amélie|Thibault|Clémence|Grégoire|Sandrine|Benoît|Océane|Maxence|Ghislaine|Loïc|Élodie|"
        "Théo|Margaux|Aurélien|Solène|Yannick",
        "Dubois|Lefèvre|Moreau|Giraud|Rousseau|Chevalier|Fontaine|Marchand|Lacroix|Beaumont|"
        "Garnier|Mercier|Boucher|Faure|Perrault|Deschamps",
    ),
    "es": (
        "Alejandro|Lucía|Santiago|Ximena|Joaquín|Valentina|Rodrigo|Inmaculada|Gonzalo|Mercedes|"
        "Ignacio|Itziar|Fernando|Guadalupe|Mateo|Consuelo",
        "García López|Fernández|Martínez|Sánchez|Álvarez|Iglesias|Domínguez|Castillo|Herrera|"
        "Ortega Ruiz|Villanueva|Echeverría|Quintero|Salazar|Mendoza|Etxeberria",
    ),
    "it": (
        "Giuseppe|Chiara|Lorenzo|Francesca|Alessandro|Giulia|Matteo|Beatrice|Riccardo|Federica|"
        "Davide|Ilaria|Niccolò|Ornella|Tommaso|Benedetta",
        "Rossi|Bianchi|Esposito|Ferraro|Colombo|Ricci|Marchetti|Santoro|Galli|Lombardi|Moretti|"
        "Barbieri|Fontana|De Luca|Caruso|Mancini",
    ),
    "pt": (
        "João|Mariana|Thiago|Larissa|Rafael|Beatriz|Gustavo|Fernanda|Leandro|Conceição|Vinícius|"
        "Camila|Gonçalo|Inês",
        "Ferreira|Oliveira|Carvalho|Rodrigues|Almeida|Pereira|Nascimento|Gonçalves|Moura|"
        "Cavalcanti|Albuquerque|Magalhães|Teixeira|Brandão",
    ),
    "nl": (
        "Sanne|Joris|Femke|Maarten|Lieke|Bram|Anouk|Sjoerd|Marieke|Thijs|Eline|Wouter|Esmee|Gijs|"
        "Noortje|Ruud",
        "de Vries|van den Berg|Jansen|Bakker|Visser|Meijer|de Jong|Mulder|Hendriks|van Dijk|"
        "Kuipers|Brouwer|Dekker|Vermeulen|Postma|Veenstra",
    ),
    "pl": (
        "Agnieszka|Krzysztof|Małgorzata|Paweł|Katarzyna|Tomasz|Zofia|Grzegorz|Magdalena|Wojciech|"
        "Joanna|Bartosz|Łukasz|Dorota",
        "Kowalski|Nowak|Wiśniewski|Wójcik|Kamińska|Lewandowski|Zielińska|Szymański|Dąbrowska|"
        "Kozłowski|Jankowski|Mazur|Krawczyk|Piotrowska",
    ),
    "nordic": (
        "Astrid|Henrik|Ingrid|Lars|Sigrid|Magnus|Linnea|Anders|Freja|Espen|Solveig|Nils|Ragnhild|"
        "Torbjørn|Elin|Aksel",
        "Lindqvist|Johansson|Andersson|Halvorsen|Bergström|Nyström|Eriksen|Sandberg|Haugen|"
        "Lundgren|Kristiansen|Åkesson|Søndergaard|Virtanen|Korhonen|Mikkelsen",
    ),
    "ru": (
        "Dmitri|Yekaterina|Sergei|Anastasia|Nikolai|Oksana|Vladimir|Svetlana|Alexei|Tatiana|"
        "Mikhail|Yulia|Ruslan|Galina|Pavel|Irina",
        "Ivanov|Smirnova|Volkov|Kuznetsova|Popov|Sokolova|Morozov|Lebedeva|Novikov|Kozlova|"
        "Fedorov|Orlova|Zaitsev|Belova|Shevchenko|Bondarenko",
    ),
    "el": (
        "Giorgos|Eleni|Dimitris|Katerina|Konstantinos|Sofia|Nikos|Despina|Yannis|Vasiliki|Stavros|"
        "Theodora",
        "Papadopoulos|Georgiou|Nikolaidis|Karagiannis|Vlachos|Oikonomou|Alexiou|Christodoulou|"
        "Pappas|Antoniou|Makris|Dimitriou",
    ),
    "tr": (
        "Mehmet|Ayşe|Emre|Zeynep|Burak|Elif|Serkan|Gülşen|Oğuz|Derya|Cem|Nurhan",
        "Yılmaz|Kaya|Demir|Şahin|Çelik|Öztürk|Aydın|Arslan|Doğan|Koç|Polat|Aksoy",
    ),
    "ar": (
        "Mohammed|Fatima|Omar|Layla|Khalid|Noura|Yousef|Mariam|Tariq|Huda|Hamza|Rania|Bilal|Samira",
        "Al-Farsi|Haddad|Khoury|Al-Masri|Nasser|Mansour|Al-Rashid|Saleh|Barakat|Hijazi|Abboud|"
        "El-Amin|Qasim|Darwish",
    ),
    "fa": (
        "Dariush|Shirin|Kaveh|Parisa|Arash|Niloufar|Babak|Roya|Farhad|Mahsa",
        "Hosseini|Rahimi|Tehrani|Moradi|Jafari|Karimi|Sadeghi|Farahani|Shirazi|Navabi",
    ),
    "in_n": (
        "Priya|Rohan|Ananya|Vikram|Kavya|Arjun|Neha|Siddharth|Pooja|Aditya|Shreya|Rahul|Meera|"
        "Karan|Deepika|Harpreet",
        "Sharma|Verma|Gupta|Malhotra|Kapoor|Chaudhary|Agarwal|Mehta|Bhatia|Singh Gill|Joshi|"
        "Saxena|Trivedi|Banerjee|Chatterjee|Mukherjee",
    ),
    "in_s": (
        "Lakshmi|Karthik|Divya|Srinivas|Anjali|Venkatesh|Revathi|Harish|Padma|Murali|Swathi|Raghav",
        "Venkataraman|Raman|Subramanian|Iyer|Krishnamurthy|Reddy|Nair|Pillai|Menon|Rao|"
        "Gopalakrishnan|Natarajan|Chandrasekhar|Balasubramanian",
    ),
    "zh": (
        "Xiuying|Wei|Jun|Meiling|Hao|Lingling|Zhiwei|Yan|Jian|Xiaoming|Fang|Yiming|Qing|Lei",
        "Wang|Zhang|Liu|Chen|Huang|Zhao|Zhou|Xu|Sun|Hu|Guo|Lin|Gao|Zheng|Xie|Luo",
    ),
    "hk": (
        "Bartholomew|Winnie|Kelvin|Cecilia|Ka-Ming|Wing-Yee|Hoi-Lam|Siu-Fung|Jacky|Karson",
        "Chan|Wong|Leung|Ng|Cheung|Yip|Lau|Tsang|Kwok|Fung",
    ),
    "ja": (
        "Haruto|Yui|Sota|Aoi|Ren|Hina|Takumi|Sakura|Kenji|Akiko|Hiroshi|Yuki|Daisuke|Naomi",
        "Sato|Suzuki|Takahashi|Tanaka|Watanabe|Ito|Nakamura|Kobayashi|Yamamoto|Kato|Yoshida|"
        "Yamada|Matsumoto|Inoue",
    ),
    "ko": (
        "Minjun|Seoyeon|Jiho|Haeun|Dohyun|Jiwoo|Yejin|Hyunwoo|Soyoung|Taeyang|Eunji|Junseo",
        "Kim|Lee|Choi|Jung|Kang|Cho|Yoon|Jang|Lim|Han|Seo|Kwon|Hwang|Park",
    ),
    "vi": (
        "Văn An|Thị Lan|Minh Tuấn|Thị Hương|Quốc Bảo|Thu Trang|Đức Anh|Ngọc Ánh|Thanh Hà|Gia Huy|"
        "Bích Ngọc|Hữu Phước",
        "Nguyễn|Trần|Lê|Phạm|Hoàng|Huỳnh|Phan|Vũ|Võ|Đặng|Bùi|Đỗ",
    ),
    "fil": (
        "Maricel|Jomar|Rowena|Angelito|Lourdes|Rommel|Jhoanna|Dindo|Marites|Arnel",
        "Dela Cruz|Bautista|Macapagal|Santos|Reyes|Magbanua|Pangilinan|Soriano|Dimaculangan|"
        "Tolentino",
    ),
    "ng": (
        "Oluwaseun|Chidinma|Emeka|Folasade|Obinna|Ngozi|Babatunde|Adaeze|Chukwuemeka|Yetunde|"
        "Ifeanyi|Aminu|Zainab|Olumide|Nkechi|Temitope",
        "Adeyemi|Okonkwo|Okafor|Balogun|Eze|Nwosu|Adebayo|Ogunleye|Chukwu|Abubakar|Okeke|"
        "Oyelaran|Igwe|Bello|Danjuma|Olatunji",
    ),
    "ea": (
        "Wanjiru|Achieng|Otieno|Nyambura|Baraka|Amani|Abebe|Tigist|Yohannes|Selam|Kipchoge|Makena",
        "Mwangi|Kamau|Odhiambo|Kiprotich|Wambui|Njoroge|Tesfaye|Haile|Mekonnen|Girma|Mutua|Chebet",
    ),
    "ca": (
        "Aigerim|Nursultan|Dinara|Yerlan|Aruzhan|Timur|Madina|Bakhyt|Zarina|Rustam",
        "Nurlanovna|Abenov|Seitkali|Zhaksybekov|Karimova|Tokayeva|Usmanov|Rakhimov|Ismailova|"
        "Bekova",
    ),
    "he": (
        "Avraham|Noa|Yosef|Tamar|Itai|Shira|Eitan|Yael|Oren|Michal",
        "Cohen|Levi|Mizrahi|Peretz|Biton|Friedman|Katz|Shapiro|Ben-David|Azoulay",
    ),
}
EASTERN = {"zh", "ja", "ko", "vi"}  # family name first


def _build_cultures() -> dict[str, tuple[list[str], list[str]]]:
    seen: set[str] = set()
    out: dict[str, tuple[list[str], list[str]]] = {}
    for culture, (given, surnames) in _CULTURE_TEXT.items():
        lists: list[list[str]] = []
        for text in (given, surnames):
            items = [x for x in text.split("|") if x not in seen]
            seen.update(items)
            lists.append(items)
        out[culture] = (lists[0], lists[1])
    return out


CULTURES = _build_cultures()

# Names in their own scripts: (full name, name used alone, romanised "given family").
SCRIPT_NAMES: dict[str, list[tuple[str, str, str]]] = {
    "zh": [
        ("王秀英", "秀英", "xiuying wang"),
        ("李建国", "建国", "jianguo li"),
        ("张伟", "张伟", "wei zhang"),
        ("刘洋", "刘洋", "yang liu"),
        ("陈静", "陈静", "jing chen"),
        ("杨帆", "杨帆", "fan yang"),
        ("赵丽娜", "丽娜", "lina zhao"),
        ("黄志强", "志强", "zhiqiang huang"),
        ("周敏", "周敏", "min zhou"),
        ("吴婷婷", "婷婷", "tingting wu"),
    ],
    "ja": [
        ("佐藤 健", "健", "ken sato"),
        ("鈴木 花子", "花子", "hanako suzuki"),
        ("高橋 大輔", "大輔", "daisuke takahashi"),
        ("田中 美咲", "美咲", "misaki tanaka"),
        ("渡辺 翔太", "翔太", "shota watanabe"),
        ("伊藤 さくら", "さくら", "sakura ito"),
        ("山本 拓也", "拓也", "takuya yamamoto"),
        ("中村 優子", "優子", "yuko nakamura"),
        ("小林 蓮", "蓮", "ren kobayashi"),
        ("加藤 陽菜", "陽菜", "hina kato"),
    ],
    "ko": [
        ("김민준", "민준", "minjun kim"),
        ("이서연", "서연", "seoyeon lee"),
        ("박지호", "지호", "jiho park"),
        ("최하은", "하은", "haeun choi"),
        ("정도현", "도현", "dohyun jung"),
        ("강지우", "지우", "jiwoo kang"),
        ("조예진", "예진", "yejin cho"),
        ("윤현우", "현우", "hyunwoo yoon"),
        ("장소영", "소영", "soyoung jang"),
        ("임태양", "태양", "taeyang lim"),
    ],
    "ar": [
        ("محمد العلي", "محمد", "mohammed alali"),
        ("فاطمة الزهراني", "فاطمة", "fatima alzahrani"),
        ("عمر الحسيني", "عمر", "omar alhusseini"),
        ("ليلى حداد", "ليلى", "layla haddad"),
        ("خالد المنصوري", "خالد", "khalid almansouri"),
        ("نورة السبيعي", "نورة", "noura alsubaie"),
        ("يوسف القاسم", "يوسف", "yousef alqasim"),
        ("مريم الخطيب", "مريم", "mariam alkhatib"),
        ("طارق البدري", "طارق", "tariq albadri"),
        ("هدى الشامي", "هدى", "huda alshami"),
    ],
    "ru": [
        ("Ирина Петрова", "Ирина", "irina petrova"),
        ("Алексей Смирнов", "Алексей", "alexei smirnov"),
        ("Наталья Волкова", "Наталья", "natalya volkova"),
        ("Дмитрий Соколов", "Дмитрий", "dmitry sokolov"),
        ("Ольга Кузнецова", "Ольга", "olga kuznetsova"),
        ("Сергей Морозов", "Сергей", "sergey morozov"),
        ("Екатерина Лебедева", "Екатерина", "ekaterina lebedeva"),
        ("Андрей Новиков", "Андрей", "andrey novikov"),
        ("Мария Фёдорова", "Мария", "maria fedorova"),
        ("Павел Орлов", "Павел", "pavel orlov"),
    ],
    "el": [
        ("Γιώργος Παπαδόπουλος", "Γιώργος", "giorgos papadopoulos"),
        ("Ελένη Γεωργίου", "Ελένη", "eleni georgiou"),
        ("Δημήτρης Νικολαΐδης", "Δημήτρης", "dimitris nikolaidis"),
        ("Κατερίνα Βλάχου", "Κατερίνα", "katerina vlachou"),
        ("Νίκος Οικονόμου", "Νίκος", "nikos oikonomou"),
        ("Σοφία Αλεξίου", "Σοφία", "sofia alexiou"),
        ("Κώστας Μακρής", "Κώστας", "kostas makris"),
        ("Δέσποινα Αντωνίου", "Δέσποινα", "despoina antoniou"),
        ("Γιάννης Παππάς", "Γιάννης", "giannis pappas"),
        ("Βασιλική Χριστοδούλου", "Βασιλική", "vasiliki christodoulou"),
    ],
    "he": [
        ("דוד כהן", "דוד", "david cohen"),
        ("נועה לוי", "נועה", "noa levi"),
        ("יוסף מזרחי", "יוסף", "yosef mizrahi"),
        ("תמר פרץ", "תמר", "tamar peretz"),
        ("איתי ביטון", "איתי", "itai biton"),
        ("שירה פרידמן", "שירה", "shira friedman"),
        ("איתן כץ", "איתן", "eitan katz"),
        ("יעל שפירא", "יעל", "yael shapira"),
        ("אורן אזולאי", "אורן", "oren azoulay"),
        ("מיכל בן דוד", "מיכל", "michal bendavid"),
    ],
    "hi": [
        ("प्रिया शर्मा", "प्रिया", "priya sharma"),
        ("राहुल वर्मा", "राहुल", "rahul verma"),
        ("अनन्या गुप्ता", "अनन्या", "ananya gupta"),
        ("विक्रम मेहता", "विक्रम", "vikram mehta"),
        ("नेहा जोशी", "नेहा", "neha joshi"),
        ("अर्जुन सिंह", "अर्जुन", "arjun singh"),
        ("कविता नायर", "कविता", "kavita nair"),
        ("संजय राव", "संजय", "sanjay rao"),
        ("दीपिका कपूर", "दीपिका", "deepika kapoor"),
        ("आदित्य त्रिवेदी", "आदित्य", "aditya trivedi"),
    ],
}

POOLS: dict[str, list[Any]] = {
    "email_free": [
        "gmail.com",
        "outlook.com",
        "yahoo.fr",
        "web.de",
        "proton.me",
        "hotmail.co.uk",
        "icloud.com",
        "gmx.de",
        "libero.it",
        "orange.fr",
        "yahoo.com",
        "hotmail.es",
        "ziggo.nl",
        "uol.com.br",
        "fastmail.com",
        "t-online.de",
        "rediffmail.com",
        "sapo.pt",
        "live.nl",
        "aol.com",
    ],
    "email_corp": [
        "northwind-logistics.com",
        "brightpath.io",
        "kestrel-health.org",
        "lumenbank.eu",
        "harborview-clinic.org",
        "acme-robotics.de",
        "quillstone.law",
        "tidewater.co",
        "fernhill-hr.com",
        "polarisfin.com",
        "orchardsoft.dev",
        "mapleleaf-travel.ca",
        "bluecedar.org",
        "greystone-legal.com",
        "sundial.app",
        "cobaltcloud.net",
        "riverbend-med.com",
        "atlas-payroll.com",
        "novaprint.fr",
        "zephyr-air.com",
    ],
    "us_street": [
        "Maple",
        "Oak Hollow",
        "Evergreen",
        "Birchwood",
        "Sycamore",
        "Willow Creek",
        "Chestnut",
        "Magnolia",
        "Juniper",
        "Hawthorne",
        "Cedar Ridge",
        "Larkspur",
        "Briarwood",
        "Cottonwood",
        "Foxglove",
        "Pinecrest",
        "Laurel Canyon",
        "Bluebonnet",
        "Aspen Grove",
        "Harborview",
        "Kingfisher",
        "Quail Run",
        "Mulberry",
        "Timberline",
    ],
    "us_city": [
        ("Springfield", "IL", "627"),
        ("Austin", "TX", "787"),
        ("Portland", "OR", "972"),
        ("Columbus", "OH", "432"),
        ("Tucson", "AZ", "857"),
        ("Raleigh", "NC", "276"),
        ("Madison", "WI", "537"),
        ("Boise", "ID", "837"),
        ("Savannah", "GA", "314"),
        ("Albany", "NY", "122"),
        ("Fresno", "CA", "937"),
        ("Omaha", "NE", "681"),
        ("Burlington", "VT", "054"),
        ("Tulsa", "OK", "741"),
        ("Richmond", "VA", "232"),
        ("Spokane", "WA", "992"),
        ("Lexington", "KY", "405"),
        ("Des Moines", "IA", "503"),
    ],
    "uk_street": [
        "Kingsley Road",
        "Orchard Close",
        "Beechwood Avenue",
        "Station Road",
        "Mill Lane",
        "Victoria Terrace",
        "Highfield Crescent",
        "Church Street",
        "Queen's Drive",
        "Primrose Hill Gardens",
        "Westbourne Grove",
        "Hawthorn Way",
        "Marlborough Road",
        "St Mary's Walk",
        "Abbey Mews",
        "Foxhall Lane",
    ],
    "uk_city": [
        ("Leeds", "LS6"),
        ("Manchester", "M14"),
        ("Bristol", "BS8"),
        ("London", "SE15"),
        ("Edinburgh", "EH9"),
        ("Cardiff", "CF24"),
        ("Glasgow", "G12"),
        ("Norwich", "NR2"),
        ("Sheffield", "S10"),
        ("Brighton", "BN1"),
        ("York", "YO10"),
        ("Oxford", "OX4"),
    ],
    "de_street": [
        "Lindenstraße",
        "Am Sandtorkai",
        "Bergmannstraße",
        "Schillerweg",
        "Goethestraße",
        "Kastanienallee",
        "Am Mühlbach",
        "Friedrichstraße",
        "Hauptstraße",
        "Rosenheimer Straße",
        "Elbchaussee",
        "Am Hofgarten",
        "Weinbergsweg",
        "Königsallee",
        "Ulmenring",
        "Auf dem Kamp",
    ],
    "de_city": [
        ("10969", "Berlin"),
        ("20457", "Hamburg"),
        ("80331", "München"),
        ("50667", "Köln"),
        ("60311", "Frankfurt am Main"),
        ("70173", "Stuttgart"),
        ("04109", "Leipzig"),
        ("01067", "Dresden"),
        ("28195", "Bremen"),
        ("90402", "Nürnberg"),
        ("30159", "Hannover"),
        ("40213", "Düsseldorf"),
    ],
    "fr_street": [
        "rue des Lilas",
        "avenue Jean Jaurès",
        "boulevard Voltaire",
        "rue de la République",
        "place Bellecour",
        "rue du Faubourg Saint-Antoine",
        "allée des Tilleuls",
        "rue Victor Hugo",
        "chemin des Vignes",
        "quai de la Loire",
        "rue Pasteur",
        "impasse des Acacias",
        "rue Sainte-Catherine",
        "avenue de la Libération",
    ],
    "fr_city": [
        ("69003", "Lyon"),
        ("75019", "Paris"),
        ("13006", "Marseille"),
        ("31000", "Toulouse"),
        ("33000", "Bordeaux"),
        ("44000", "Nantes"),
        ("59000", "Lille"),
        ("67000", "Strasbourg"),
        ("34000", "Montpellier"),
        ("35000", "Rennes"),
        ("06000", "Nice"),
        ("21000", "Dijon"),
    ],
    "in_area": [
        ("3rd Cross, 5th Main, Indiranagar", "Bengaluru", "560038"),
        ("Road No. 12, Banjara Hills", "Hyderabad", "500034"),
        ("Sector 18", "Noida", "201301"),
        ("Koregaon Park", "Pune", "411001"),
        ("2nd Main Road, Besant Nagar", "Chennai", "600090"),
        ("Linking Road, Bandra West", "Mumbai", "400050"),
        ("Salt Lake Sector V", "Kolkata", "700091"),
        ("Civil Lines", "Jaipur", "302006"),
        ("Panampilly Nagar", "Kochi", "682036"),
        ("Vasant Kunj", "New Delhi", "110070"),
        ("HSR Layout, 27th Main", "Bengaluru", "560102"),
        ("Jubilee Hills", "Hyderabad", "500033"),
    ],
    "nl_street": [
        "Prinsengracht",
        "Witte de Withstraat",
        "Oudegracht",
        "Lange Voorhout",
        "Vondelstraat",
        "Grote Markt",
        "Nieuwe Binnenweg",
        "Herengracht",
        "Javastraat",
        "Kerkstraat",
        "Biltstraat",
        "Zeestraat",
    ],
    "nl_city": [
        ("1016", "Amsterdam"),
        ("3012", "Rotterdam"),
        ("3511", "Utrecht"),
        ("2514", "Den Haag"),
        ("9711", "Groningen"),
        ("5611", "Eindhoven"),
        ("2311", "Leiden"),
        ("6511", "Nijmegen"),
    ],
    "es_street": [
        "Calle de Alcalá",
        "Avinguda Diagonal",
        "Calle Mayor",
        "Paseo de Gracia",
        "Calle de Toledo",
        "Avenida de la Constitución",
        "Calle Larios",
        "Gran Vía",
        "Calle del Carmen",
        "Rambla de Catalunya",
        "Calle San Fernando",
        "Calle Colón",
    ],
    "es_city": [
        ("28014", "Madrid"),
        ("08018", "Barcelona"),
        ("41001", "Sevilla"),
        ("46001", "Valencia"),
        ("29015", "Málaga"),
        ("48001", "Bilbao"),
        ("50001", "Zaragoza"),
        ("15001", "A Coruña"),
    ],
    "it_street": [
        "Via Garibaldi",
        "Corso Vittorio Emanuele II",
        "Via dei Mille",
        "Piazza Navona",
        "Via Roma",
        "Viale Monza",
        "Via Toledo",
        "Corso Buenos Aires",
        "Via della Spiga",
        "Via Nazionale",
        "Borgo San Frediano",
        "Via Po",
    ],
    "it_city": [
        ("20121", "Milano"),
        ("00186", "Roma"),
        ("80134", "Napoli"),
        ("10123", "Torino"),
        ("50124", "Firenze"),
        ("40126", "Bologna"),
        ("16123", "Genova"),
        ("30121", "Venezia"),
    ],
    "pt_street": [
        "Rua Augusta",
        "Avenida Paulista",
        "Rua da Prata",
        "Rua Oscar Freire",
        "Avenida da Liberdade",
        "Rua das Flores",
        "Rua Voluntários da Pátria",
        "Avenida Atlântica",
        "Rua de Santa Catarina",
        "Rua Haddock Lobo",
    ],
    "pt_city": [
        ("São Paulo - SP", "01310"),
        ("Lisboa", "1100"),
        ("Rio de Janeiro - RJ", "22021"),
        ("Porto", "4000"),
        ("Belo Horizonte - MG", "30130"),
        ("Coimbra", "3000"),
        ("Curitiba - PR", "80010"),
        ("Braga", "4700"),
    ],
    "pw_word": [
        "Sunflower",
        "monkey",
        "Trombone",
        "harbor",
        "Falcon",
        "pickle",
        "Velvet",
        "bluejay",
        "Copper",
        "meadow",
        "Lantern",
        "pretzel",
        "Saffron",
        "walrus",
        "Glacier",
        "toffee",
        "Orchid",
        "marble",
        "Tundra",
        "biscuit",
    ],
    "host": [
        "db-prod-01.internal",
        "pg-main.eu-west-1.rds.amazonaws.com",
        "10.20.3.14",
        "orders-db.svc.cluster.local",
        "mysql.staging.corp",
        "analytics-pg.internal:6432",
        "redis-cache-02.prod",
        "warehouse.acme.local",
        "db.int.brightpath.io",
        "pg-replica-3",
    ],
    "company": [
        "Northwind Logistics",
        "Brightpath Insurance",
        "Kestrel Health",
        "Lumen Bank",
        "Harborview Clinic",
        "Acme Robotics",
        "Quillstone LLP",
        "Tidewater Telecom",
        "Fernhill Staffing",
        "Polaris Finance",
        "Orchard Software",
        "Maple Leaf Travel",
        "Blue Cedar Energy",
        "Greystone Legal",
        "Sundial Apps",
        "Cobalt Cloud",
    ],
}


# --------------------------------------------------------------------------------------------
# Value generators
# --------------------------------------------------------------------------------------------

UPPER = string.ascii_uppercase
ALNUM = string.ascii_letters + string.digits
B64 = string.ascii_letters + string.digits + "+/"


def ascii_fold(s: str) -> str:
    s = s.replace("ß", "ss").replace("ø", "o").replace("Ø", "O").replace("ł", "l")
    s = s.replace("Ł", "L").replace("đ", "d").replace("Đ", "D").replace("ı", "i")
    norm = unicodedata.normalize("NFKD", s)
    return "".join(c for c in norm if not unicodedata.combining(c) and ord(c) < 128)


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", ascii_fold(s).lower())


@dataclass
class Person:
    given: str
    surname: str
    culture: str
    script_full: str = ""
    script_first: str = ""

    def full(self) -> Tag:
        if self.script_full:
            return Tag(self.script_full, PER)
        if self.culture in EASTERN:
            return Tag(f"{self.surname} {self.given}", PER)
        return Tag(f"{self.given} {self.surname}", PER)

    def first(self) -> Tag:
        if self.script_first:
            return Tag(self.script_first, PER)
        if self.culture == "vi":
            return Tag(self.given.split()[-1], PER)
        return Tag(self.given, PER)

    def last(self) -> Tag:
        if self.script_full:
            return self.full()
        return Tag(self.surname, PER)

    def lower(self) -> Tag:
        return Tag(str(self.first()).lower(), PER)

    def lower_full(self) -> Tag:
        return Tag(str(self.full()).lower(), PER)

    def spelled(self, ctx: Ctx) -> Tag:
        letters = [c for c in ascii_fold(self.surname).upper() if c.isalpha()]
        sep = ctx.any(["-", " ", ". ", ", "])
        text = sep.join(letters) + ("." if sep == ". " else "")
        return Tag(text, PER)

    def handle(self, ctx: Ctx) -> Tag:
        g, s = (
            _slug(self.given.split()[-1] if self.culture == "vi" else self.given),
            _slug(self.surname),
        )
        form = ctx.any(["gs", "g_s", "g-s", "fs", "g_s_n", "s_g", "gn", "g.s"])
        if form == "g.s":
            form = "g_s"  # the message "name" field only allows [A-Za-z0-9_-]
        out = {
            "gs": g + s,
            "g_s": f"{g}_{s}",
            "g-s": f"{g}-{s}",
            "fs": g[:1] + s,
            "g_s_n": f"{g}_{s}{ctx.rng.randint(1, 99)}",
            "s_g": f"{s}_{g}",
            "gn": f"{g}{ctx.rng.randint(70, 99)}",
        }[form]
        return Tag(out[:64], PER)

    def email(self, ctx: Ctx, corp: bool | None = None) -> Tag:
        g, s = _slug(self.given), _slug(self.surname)
        if corp is None:
            corp = ctx.chance(0.5)
        domain = ctx.pool("email_corp" if corp else "email_free")
        local = ctx.any(
            [
                f"{g}.{s}",
                f"{g[:1]}{s}",
                f"{g}_{s}{ctx.rng.randint(1, 99)}",
                f"{g}",
                f"{s}.{g[:1]}",
                f"{g}{s}{ctx.rng.randint(70, 99)}",
            ]
        )
        return Tag(f"{local}@{domain}", EMAIL)


def make_person(ctx: Ctx, culture: str | None = None) -> Person:
    if culture is None and ctx.chance(0.12):
        script = ctx.any(sorted(ctx.scripts))
        full, first, roman = ctx.rng.choice(ctx.scripts[script])
        g, s = roman.split(" ", 1)
        return Person(g.title(), s.title(), "script:" + script, full, first)
    if culture is None:
        culture = ctx.any(sorted(CULTURES))
    given, surnames = ctx.cultures[culture]
    return Person(ctx.rng.choice(given), ctx.rng.choice(surnames), culture)


def people(ctx: Ctx, n: int, culture: str | None = None) -> list[Person]:
    out: list[Person] = []
    while len(out) < n:
        p = make_person(ctx, culture)
        if all(p.given != q.given and p.surname != q.surname for q in out):
            out.append(p)
    return out


# ---- phone numbers -------------------------------------------------------------------------


def phone(ctx: Ctx, region: str | None = None, ext: bool | None = None) -> Tag:
    r = ctx.rng
    region = region or ctx.any(
        ["us", "us", "us", "fr", "nl", "in", "de", "br", "ng", "es", "it", "uk", "uk"]
    )
    d = ctx.digits
    if region == "us":
        a, b, c = f"{r.choice('2345689')}{d(2)}", f"{r.choice('2345689')}{d(2)}", d(4)
        if ctx.chance(0.3):
            b, c = "555", f"01{d(2)}"
        text = ctx.any(
            [
                f"({a}) {b}-{c}",
                f"{a}.{b}.{c}",
                f"+1 {a} {b} {c}",
                f"{a}-{b}-{c}",
                f"+1-{a}-{b}-{c}",
                f"1 ({a}) {b}-{c}",
            ]
        )
    elif region == "fr":
        pairs = [f"0{r.choice('67')}"] + [d(2) for _ in range(4)]
        text = ctx.any(
            [" ".join(pairs), "+33 " + pairs[0][1] + " " + " ".join(pairs[1:]), ".".join(pairs)]
        )
    elif region == "nl":
        text = ctx.any([f"06-{d(8)}", f"06 {d(4)} {d(4)}", f"+31 6 {d(8)}", f"020-{d(7)}"])
    elif region == "in":
        a, b = f"{r.choice('6789')}{d(4)}", d(5)
        text = ctx.any([f"{a} {b}", f"+91 {a} {b}", f"+91-{a}{b}", f"0{a} {b}"])
    elif region == "de":
        text = ctx.any(
            [
                f"030/{d(7)}",
                f"0171 {d(7)}",
                f"+49 89 {d(8)}",
                f"0152-{d(8)}",
                f"+49 (0)40 {d(3)} {d(4)}",
            ]
        )
    elif region == "br":
        text = ctx.any([f"(11) 9{d(4)}-{d(4)}", f"+55 21 9{d(4)}-{d(4)}", f"(31) 3{d(3)}-{d(4)}"])
    elif region == "ng":
        p = ctx.any(["803", "806", "813", "703", "905", "810"])
        text = ctx.any([f"0{p} {d(3)} {d(4)}", f"+234 {p} {d(3)} {d(4)}", f"0{p}{d(7)}"])
    elif region == "es":
        text = ctx.any(
            [
                f"6{d(2)} {d(2)} {d(2)} {d(2)}",
                f"+34 6{d(2)} {d(3)} {d(3)}",
                f"91 {d(3)} {d(2)} {d(2)}",
            ]
        )
    elif region == "it":
        text = ctx.any([f"3{d(2)} {d(3)} {d(4)}", f"+39 3{d(2)} {d(7)}", f"02 {d(4)} {d(4)}"])
    elif region == "pt":
        text = ctx.any([f"9{d(2)} {d(3)} {d(3)}", f"+351 21 {d(3)} {d(4)}"])
    else:  # uk
        text = ctx.any(
            [
                f"07700 {d(6)}",
                f"020 7946 {d(4)}",
                f"+44 7{d(3)} {d(6)}",
                f"0161 {d(3)} {d(4)}",
                f"+44 (0)20 {d(4)} {d(4)}",
            ]
        )
    if ext is None:
        ext = region in ("us", "uk", "de") and ctx.chance(0.12)
    if ext:
        text += ctx.any(
            [f" x{d(3)}", f" ext. {d(2)}", f";ext={d(2)}", f" ext {d(4)}", f" (ext. {d(3)})"]
        )
    return Tag(text, PHONE)


def phone_num(ctx: Ctx) -> Num:
    """A phone number written as a JSON number (digits only)."""
    return Num(
        ctx.any(["1", "44", "91", "49", "234"]) + str(ctx.rng.randint(2, 9)) + ctx.digits(9), PHONE
    )


# ---- street addresses ----------------------------------------------------------------------

LANG_REGION = {"en": "us", "fr": "fr", "de": "de", "es": "es", "it": "it", "nl": "nl", "pt": "pt"}


def address(ctx: Ctx, region: str | None = None) -> Tag:
    r = ctx.rng
    region = region or ctx.any(
        ["us", "us", "us", "uk", "uk", "de", "fr", "in", "nl", "es", "it", "pt"]
    )
    n = str(r.choice([r.randint(1, 99), r.randint(100, 999), r.randint(1000, 9999)]))
    if region == "us":
        street = ctx.pool("us_street")
        suffix = ctx.any(
            [
                "Ave",
                "Avenue",
                "St",
                "Street",
                "Blvd",
                "Dr",
                "Drive",
                "Lane",
                "Rd",
                "Ct",
                "Way",
                "Pl",
                "Terrace",
            ]
        )
        city, state, z = ctx.pool("us_city")
        zipc = z + ctx.digits(2)
        unit = ctx.any(
            [
                "",
                "",
                "",
                f"Apt {r.randint(1, 30)}{r.choice('ABCD')}",
                f"Suite {r.randint(100, 950)}",
                f"Unit {r.randint(1, 40)}",
                f"#{r.randint(2, 60)}",
            ]
        )
        line = f"{n} {street} {suffix}"
        if ctx.chance(0.12):
            nth = r.randint(2, 12)
            sfx = {2: "nd", 3: "rd"}.get(nth, "th")
            line = f"{n} {nth}{sfx} {ctx.any(['Avenue', 'Street', 'St'])}"
        form = ctx.any(["full", "full", "full", "street", "lower", "nozip"])
        if form == "street":
            text = line + (f", {unit}" if unit else "")
        elif form == "lower":
            text = f"{line} {unit}".strip().lower()
        elif form == "nozip":
            text = f"{line}, {city}"
        else:
            text = ", ".join(x for x in (line, unit, city) if x) + f", {state} {zipc}"
    elif region == "uk":
        street = ctx.pool("uk_street")
        city, out = ctx.pool("uk_city")
        pc = f"{out} {r.randint(1, 9)}{ctx.chars(2, 'ABDEFGHJLNPQRSTUWXYZ')}"
        num = str(r.randint(1, 180))
        flat = ctx.any(
            ["", "", f"Flat {r.randint(1, 12)}, ", f"Flat {r.randint(1, 9)}{r.choice('AB')}, "]
        )
        text = ctx.any(
            [
                f"{flat}{num} {street}, {city} {pc}",
                f"{flat}{num} {street}, {city}, {pc}",
                f"{num} {street}",
            ]
        )
    elif region == "de":
        street = ctx.pool("de_street")
        plz, city = ctx.pool("de_city")
        num = str(r.randint(1, 160)) + ctx.any(["", "", "", "a", "b", "c"])
        text = ctx.any(
            [
                f"{street} {num}, {plz} {city}",
                f"{street} {num}",
                f"{street} {num}, {plz} {city}, " + ctx.any(["2. OG", "Hinterhaus", "3. OG links"]),
            ]
        )
    elif region == "fr":
        street = ctx.pool("fr_street")
        cp, city = ctx.pool("fr_city")
        num = str(r.randint(1, 140)) + ctx.any(["", "", " bis", " ter"])
        text = ctx.any(
            [
                f"{num} {street}, {cp} {city}",
                f"{num}, {street}, {cp} {city}",
                f"{num} {street}",
                f"Bât. {r.choice('ABC')}, {num} {street}, {cp} {city}",
            ]
        )
    elif region == "in":
        area, city, pin = ctx.pool("in_area")
        text = ctx.any(
            [
                f"House No. {r.randint(1, 400)}, {area}, {city} {pin}",
                f"Flat {r.randint(101, 1204)}, "
                + ctx.any(
                    [
                        "Sai Krupa Apartments",
                        "Prestige Lakeside",
                        "Green Glen Residency",
                        "Shanti Niketan",
                    ]
                )
                + f", {area}, {city} - {pin}",
                f"{r.randint(1, 90)}/{r.randint(1, 9)}, {area}, {city}",
            ]
        )
    elif region == "nl":
        street = ctx.pool("nl_street")
        pc, city = ctx.pool("nl_city")
        num = str(r.randint(1, 400)) + ctx.any(["", "", "A", "-H", " III", "-2"])
        text = ctx.any(
            [
                f"{street} {num}, {pc} {ctx.chars(2, 'ABCEGHJKLMNPRSTVWXZ')} {city}",
                f"{street} {num}",
            ]
        )
    elif region == "es":
        street = ctx.pool("es_street")
        cp, city = ctx.pool("es_city")
        floor = ctx.any(
            ["", f"{r.randint(1, 8)}º {r.choice('ABCD')}, ", f"{r.randint(1, 6)}º izq., "]
        )
        text = ctx.any(
            [
                f"{street} {r.randint(1, 250)}, {floor}{cp} {city}",
                f"{street}, {r.randint(1, 250)}, {floor}{cp} {city}",
            ]
        )
    elif region == "it":
        street = ctx.pool("it_street")
        cap, city = ctx.pool("it_city")
        text = ctx.any(
            [
                f"{street} {r.randint(1, 200)}, {cap} {city}",
                f"{street} {r.randint(1, 200)}/{r.choice('ABC')}, {cap} {city}",
                f"{street}, {r.randint(1, 200)} - {cap} {city}",
            ]
        )
    else:  # pt / br
        street = ctx.pool("pt_street")
        city, cep = ctx.pool("pt_city")
        apt = ctx.any(
            [
                f", apto {r.randint(11, 190)}",
                f", conj. {r.randint(11, 99)}",
                f", {r.randint(1, 9)}º Esq.",
                "",
            ]
        )
        post = f"{cep}-{ctx.digits(3)}"
        text = ctx.any(
            [
                f"{street} {r.randint(1, 2500)}{apt}, {city}",
                f"{street}, {r.randint(1, 2500)}{apt}, {post} {city}",
            ]
        )
    return Tag(text, ADDR)


# ---- identifiers ---------------------------------------------------------------------------


def ssn_digits(ctx: Ctx) -> str:
    r = ctx.rng
    area = r.choice([r.randint(1, 665), r.randint(667, 899)])
    return f"{area:03d}{r.randint(1, 99):02d}{r.randint(1, 9999):04d}"


def ssn(ctx: Ctx, form: str | None = None) -> Tag:
    d = ssn_digits(ctx)
    form = form or ctx.any(["dash", "dash", "dash", "space", "plain", "read"])
    if form == "dash":
        text = f"{d[:3]}-{d[3:5]}-{d[5:]}"
    elif form == "space":
        text = f"{d[:3]} {d[3:5]} {d[5:]}"
    elif form == "plain":
        text = d
    else:
        groups = (" ".join(d[:3]), " ".join(d[3:5]), " ".join(d[5:]))
        text = ctx.any([", ".join(groups), " - ".join(groups), "... ".join(groups)])
    return Tag(text, SSN)


def ssn_num(ctx: Ctx) -> Num:
    while True:
        d = ssn_digits(ctx)
        if d[0] != "0":
            return Num(d, SSN)


def luhn_complete(ctx: Ctx, prefix: str, length: int) -> str:
    body = prefix + ctx.digits(length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch)
        if i % 2 == 0:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return body + str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        v = int(ch)
        if i % 2 == 1:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return total % 10 == 0


def card_digits(ctx: Ctx, brand: str | None = None) -> str:
    brand = brand or ctx.any(["visa", "visa", "mc2", "mc5", "amex", "discover"])
    if brand == "visa":
        return luhn_complete(ctx, "4", 16)
    if brand == "mc2":
        return luhn_complete(ctx, str(ctx.rng.randint(2221, 2720)), 16)
    if brand == "mc5":
        return luhn_complete(ctx, str(ctx.rng.randint(51, 55)), 16)
    if brand == "amex":
        return luhn_complete(ctx, ctx.any(["34", "37"]), 15)
    return luhn_complete(ctx, ctx.any(["6011", "65", "644"]), 16)


def card(ctx: Ctx, brand: str | None = None) -> Tag:
    d = card_digits(ctx, brand)
    form = ctx.any(["compact", "space", "space", "dash"])
    if form == "compact":
        return Tag(d, CARD)
    sep = " " if form == "space" else "-"
    if len(d) == 15:
        return Tag(sep.join([d[:4], d[4:10], d[10:]]), CARD)
    return Tag(sep.join(d[i : i + 4] for i in range(0, 16, 4)), CARD)


def card_num(ctx: Ctx) -> Num:
    return Num(card_digits(ctx), CARD)


def iban_with_check(country: str, bban: str) -> str:
    num = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(num) % 97:02d}{bban}"


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "")
    s = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97 == 1


def _es_dc(digits: str) -> int:
    w = [1, 2, 4, 8, 5, 10, 9, 7, 3, 6]
    r = 11 - sum(int(d) * w[i] for i, d in enumerate(digits)) % 11
    return 0 if r == 11 else 1 if r == 10 else r


def iban(ctx: Ctx, country: str | None = None, grouped: bool | None = None) -> Tag:
    d = ctx.digits
    country = country or ctx.any(["DE", "FR", "GB", "NL", "ES", "IT"])
    if country == "DE":
        bban = d(8) + d(10)
    elif country == "FR":
        bank, branch, acct = d(5), d(5), d(11)
        key = 97 - (89 * int(bank) + 15 * int(branch) + 3 * int(acct)) % 97
        bban = f"{bank}{branch}{acct}{key:02d}"
    elif country == "GB":
        bban = ctx.any(["NWBK", "BARC", "LOYD", "HBUK", "MIDL", "MONZ"]) + d(6) + d(8)
    elif country == "NL":
        bban = ctx.any(["ABNA", "INGB", "RABO", "TRIO", "SNSB", "KNAB"]) + d(10)
    elif country == "ES":
        bank, branch, acct = d(4), d(4), d(10)
        bban = f"{bank}{branch}{_es_dc('00' + bank + branch)}{_es_dc(acct)}{acct}"
    else:
        bban = ctx.chars(1, UPPER) + d(5) + d(5) + d(12)
    text = iban_with_check(country, bban)
    assert iban_ok(text)
    if grouped is None:
        grouped = ctx.chance(0.5)
    if grouped:
        text = " ".join(text[i : i + 4] for i in range(0, len(text), 4))
    return Tag(text, IBAN)


def passport(ctx: Ctx) -> Tag:
    d = ctx.digits
    form = ctx.any(["us", "l8", "de", "fr", "es", "it", "in", "nl", "uk"])
    text = {
        "us": str(ctx.rng.randint(1, 9)) + d(8),
        "l8": ctx.any(["X", "A", "E", "P"]) + d(8),
        "de": ctx.any(list("CFGHJK")) + ctx.chars(8, "CFGHJKLMNPRTVWXYZ0123456789"),
        "fr": d(2) + ctx.chars(2, UPPER) + d(5),
        "es": ctx.chars(3, UPPER) + d(6),
        "it": ctx.chars(2, UPPER) + d(7),
        "in": ctx.chars(1, "JKLMNPRSTUVZ") + d(7),
        "nl": ctx.chars(2, "BCDFGHJKLMNPRSTVWXYZ")
        + ctx.chars(6, "BCDFGHJKLNPRSTVWXYZ0123456789")
        + d(1),
        "uk": str(ctx.rng.randint(1, 9)) + d(8),
    }[form]
    return Tag(text, PASS)


def nhs_number(ctx: Ctx) -> str:
    while True:
        body = ctx.digits(9)
        r = 11 - sum(int(c) * (10 - i) for i, c in enumerate(body)) % 11
        if r == 10:
            continue
        n = body + str(0 if r == 11 else r)
        return f"{n[:3]} {n[3:6]} {n[6:]}"


def mrn(ctx: Ctx, nhs: bool = False) -> Tag:
    d = ctx.digits
    if nhs:
        return Tag(nhs_number(ctx), MRN)
    form = ctx.any(["zero8", "prefix", "letter", "dash", "plain7", "e9"])
    text = {
        "zero8": "00" + d(6),
        "prefix": "MRN-" + str(ctx.rng.randint(1000000, 9999999)),
        "letter": ctx.chars(1, "ABEHKMZ") + d(7),
        "dash": f"{d(4)}-{d(4)}",
        "plain7": str(ctx.rng.randint(1000000, 9999999)),
        "e9": "E" + d(9),
    }[form]
    return Tag(text, MRN)


def mrn_num(ctx: Ctx) -> Num:
    return Num(str(ctx.rng.randint(1000000, 99999999)), MRN)


def ip(ctx: Ctx, kind: str | None = None) -> Tag:
    r = ctx.rng
    kind = kind or ctx.any(["pub", "pub", "priv", "v6", "v6link"])
    if kind == "pub":
        first = ctx.any(
            [
                23,
                31,
                37,
                45,
                52,
                62,
                77,
                81,
                89,
                91,
                103,
                109,
                145,
                151,
                176,
                185,
                188,
                193,
                203,
                212,
                217,
            ]
        )
        text = f"{first}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    elif kind == "priv":
        text = ctx.any(
            [
                f"192.168.{r.randint(0, 2)}.{r.randint(2, 254)}",
                f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(2, 254)}",
                f"172.{r.randint(16, 31)}.{r.randint(0, 255)}.{r.randint(2, 254)}",
            ]
        )
    elif kind == "v6":
        hx = [f"{r.randint(0, 65535):x}" for _ in range(8)]
        pre = ctx.any(["2001:db8", "2a02:8108", "2600:1700", "2a01:4f8", "2c0f:fc89"])
        text = ctx.any(
            [
                f"{pre}:{hx[2]}:{hx[3]}:{hx[4]}:{hx[5]}:{hx[6]}:{hx[7]}",
                f"{pre}:{hx[2]}::{hx[6]}:{hx[7]}",
                f"{pre}:{hx[2]}:{hx[3]}::{hx[7]}",
            ]
        )
    else:
        hx = [f"{r.randint(1, 65535):x}" for _ in range(4)]
        text = f"fe80::{hx[0]}:{hx[1]}:{hx[2]}:{hx[3]}"
    return Tag(text, IP)


# ---- dates of birth ------------------------------------------------------------------------

MONTHS = {
    "en": "January February March April May June July August September October November December",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
    "diciembre",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre "
    "dicembre",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro "
    "dezembro",
}


@dataclass
class Date:
    y: int
    m: int
    d: int

    def iso(self) -> str:
        return f"{self.y:04d}-{self.m:02d}-{self.d:02d}"


def birth_date(ctx: Ctx) -> Date:
    return Date(ctx.rng.randint(1938, 2007), ctx.rng.randint(1, 12), ctx.rng.randint(1, 28))


def fmt_date(ctx: Ctx, dt: Date, lang: str = "en", form: str | None = None) -> Tag:
    mon = MONTHS[lang].split()[dt.m - 1]
    y, m, d = dt.y, dt.m, dt.d
    if lang == "en":
        form = form or ctx.any(["us", "us", "long", "eu_long", "iso", "us_short", "abbr"])
        text = {
            "us": f"{m:02d}/{d:02d}/{y}",
            "us_short": f"{m}/{d}/{y % 100:02d}",
            "long": f"{mon} {d}, {y}",
            "eu_long": f"{d} {mon} {y}",
            "iso": dt.iso(),
            "abbr": f"{mon[:3]} {d} {y}",
        }[form]
    elif lang == "de":
        form = form or ctx.any(["long", "num"])
        text = f"{d}. {mon} {y}" if form == "long" else f"{d:02d}.{m:02d}.{y}"
    elif lang in ("es", "pt"):
        form = form or ctx.any(["long", "num"])
        text = f"{d} de {mon} de {y}" if form == "long" else f"{d:02d}/{m:02d}/{y}"
    elif lang == "nl":
        form = form or ctx.any(["long", "num"])
        text = f"{d} {mon} {y}" if form == "long" else f"{d:02d}-{m:02d}-{y}"
    else:  # fr, it
        form = form or ctx.any(["long", "num"])
        text = f"{d} {mon} {y}" if form == "long" else f"{d:02d}/{m:02d}/{y}"
    return Tag(text, DOB)


def dob(ctx: Ctx, lang: str = "en") -> Tag:
    return fmt_date(ctx, birth_date(ctx), lang)


def dob_iso(ctx: Ctx) -> Tag:
    return Tag(birth_date(ctx).iso(), DOB)


# ---- credentials ---------------------------------------------------------------------------


def aws_key_id(ctx: Ctx) -> Tag:
    return Tag(ctx.any(["AKIA", "AKIA", "ASIA"]) + ctx.chars(16, UPPER + "234567"), CRED)


def aws_secret(ctx: Ctx) -> Tag:
    s = ctx.chars(40, B64)
    if ctx.chance(0.3):
        s = ctx.any(["+", "/"]) + s[1:]
    if ctx.chance(0.3):
        s = s[:-1] + ctx.any(["+", "/"])
    return Tag(s, CRED)


def github_token(ctx: Ctx) -> Tag:
    if ctx.chance(0.25):
        return Tag(
            "github_pat_11" + ctx.chars(20, UPPER + string.digits) + "_" + ctx.chars(59, ALNUM),
            CRED,
        )
    return Tag(ctx.any(["ghp_", "gho_", "ghs_"]) + ctx.chars(36, ALNUM), CRED)


def slack_token(ctx: Ctx) -> Tag:
    return Tag(
        f"{ctx.any(['xoxb', 'xoxp'])}-{ctx.digits(11)}-{ctx.digits(13)}-{ctx.chars(24, ALNUM)}",
        CRED,
    )


def stripe_key(ctx: Ctx) -> Tag:
    prefix = ctx.any(["sk_live_", "rk_live_", "sk_test_"])
    return Tag(prefix + ctx.chars(ctx.rng.randint(24, 40), ALNUM), CRED)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(ctx: Ctx) -> Tag:
    head = _b64url(
        json.dumps(
            {"alg": ctx.any(["HS256", "RS256"]), "typ": "JWT"}, separators=(",", ":")
        ).encode()
    )
    body = {
        "sub": f"svc-{ctx.chars(8, string.ascii_lowercase + string.digits)}",
        "iat": 1700000000 + ctx.rng.randint(0, 30000000),
        "scope": ctx.any(["read:orders", "admin", "billing:write", "deploy"]),
    }
    payload = _b64url(json.dumps(body, separators=(",", ":")).encode())
    sig = ctx.chars(43, ALNUM + "-_")
    return Tag(f"{head}.{payload}.{sig}", CRED)


def password(ctx: Ctx, url_safe: bool = False) -> Tag:
    w = ctx.pool("pw_word")
    sym = ctx.any(["!", "*", "_", "-", "~"] if url_safe else ["!", "#", "$", "%", "*", "&", "?"])
    form = ctx.any(["word", "leet", "random", "phrase"])
    if form == "word":
        text = f"{w}{ctx.rng.randint(1, 2025)}{sym}"
    elif form == "leet":
        text = w.replace("o", "0").replace("a", "4").replace("e", "3") + sym + ctx.digits(2)
    elif form == "random":
        alphabet = ALNUM + ("!*_-~" if url_safe else "!#$%*&?@^")
        text = ctx.chars(ctx.rng.randint(12, 20), alphabet)
    else:
        text = f"{w}-{ctx.pool('pw_word').lower()}-{ctx.digits(2)}"
    return Tag(text, CRED)


def api_key(ctx: Ctx) -> Tag:
    form = ctx.any(["google", "openai", "hex", "sendgrid"])
    if form == "google":
        return Tag("AIza" + ctx.chars(35, ALNUM + "-_"), CRED)
    if form == "openai":
        return Tag("sk-proj-" + ctx.chars(48, ALNUM), CRED)
    if form == "sendgrid":
        return Tag(f"SG.{ctx.chars(22, ALNUM)}.{ctx.chars(43, ALNUM)}", CRED)
    return Tag(ctx.chars(32, "0123456789abcdef"), CRED)


def private_key(ctx: Ctx) -> Tag:
    kind = ctx.any(["RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY"])
    lines = [ctx.chars(64, B64) for _ in range(ctx.rng.randint(4, 9))]
    lines.append(ctx.chars(ctx.rng.randint(8, 60), B64) + ctx.any(["", "=", "=="]))
    if kind == "OPENSSH PRIVATE KEY":
        lines[0] = "b3BlbnNzaC1rZXktdjEAAAAA" + lines[0][24:]
    return Tag(f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----", CRED)


def b64_cred(value: str) -> Tag:
    return Tag(base64.b64encode(value.encode()).decode(), CRED)


# --------------------------------------------------------------------------------------------
# Conversation builder
# --------------------------------------------------------------------------------------------


def prop(kind: str, desc: object, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "description": desc}
    out.update(extra)
    return out


def tool(
    name: str, desc: object, props: dict[str, Any], required: Sequence[str] = ()
) -> dict[str, Any]:
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name), name
    params: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        params["required"] = list(required)
    return {
        "type": "function",
        "function": {"name": name, "description": desc, "parameters": params},
    }


class Conv:
    def __init__(self, ctx: Ctx, domain: str) -> None:
        self.ctx = ctx
        self.domain = domain
        self.messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] = []

    def system(self, content: Text) -> None:
        self.messages.append({"role": "system", "content": content})

    def user(self, content: Text, name: Text | None = None) -> None:
        msg: dict[str, Any] = {"role": "user", "content": content}
        if name is not None:
            assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(name)), name
            msg["name"] = name
        self.messages.append(msg)

    def assistant(self, content: Text, name: Text | None = None) -> None:
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if name is not None:
            msg["name"] = name
        self.messages.append(msg)

    def calls(
        self,
        items: Sequence[tuple[str, Any, Any]],
        content: Text | None = None,
        indent: int | None = None,
    ) -> None:
        """Assistant turn with one or more tool calls, each followed by its tool result."""
        tcs = []
        ids = []
        for fn, args, _ in items:
            cid = "call_" + self.ctx.chars(24, ALNUM)
            ids.append(cid)
            tcs.append(
                {"id": cid, "type": "function", "function": {"name": fn, "arguments": jtext(args)}}
            )
        self.messages.append({"role": "assistant", "content": content, "tool_calls": tcs})
        for cid, (_, _, result) in zip(ids, items, strict=True):
            res = result if isinstance(result, Seg | str) else jtext(result, indent)
            self.messages.append({"role": "tool", "tool_call_id": cid, "content": res})

    def call(
        self,
        fn: str,
        args: Any,
        result: Any,
        content: Text | None = None,
        indent: int | None = None,
    ) -> None:
        self.calls([(fn, args, result)], content, indent)

    def body(self) -> dict[str, Any]:
        ctx = self.ctx
        b: dict[str, Any] = {"model": "capture", "messages": self.messages}
        if self.tools:
            b["tools"] = self.tools
            if ctx.chance(0.4):
                b["tool_choice"] = ctx.any(["auto", "auto", "required"])
        if ctx.chance(0.3):
            b["temperature"] = ctx.any([0, 0.2, 0.3, 0.7, 1])
        if ctx.chance(0.25):
            b["max_tokens"] = ctx.any([256, 512, 800, 1024, 2048])
        if ctx.chance(0.2):
            b["user"] = "usr_" + ctx.chars(16, "0123456789abcdef")
        return b


# --------------------------------------------------------------------------------------------
# Turning a built body into plain JSON plus spans, and validating it
# --------------------------------------------------------------------------------------------


def finalize(node: Any, path: list[Any], spans: list[dict[str, Any]]) -> Any:
    if isinstance(node, Seg | Tag):
        s = seg(node)
        for start, end, label in s.marks:
            spans.append(
                {
                    "path": list(path),
                    "start": start,
                    "end": end,
                    "label": label,
                    "value": s.text[start:end],
                }
            )
        return s.text
    if isinstance(node, dict):
        return {k: finalize(v, [*path, k], spans) for k, v in node.items()}
    if isinstance(node, list):
        return [finalize(v, [*path, i], spans) for i, v in enumerate(node)]
    return node


def at_path(body: Any, path: Sequence[Any]) -> Any:
    for key in path:
        body = body[key]
    return body


def field_of(body: dict[str, Any], path: Sequence[Any]) -> str:
    if path[0] == "tools":
        return "tool_description"
    msg = body["messages"][path[1]]
    if path[2] == "name":
        return "name"
    if path[2] == "tool_calls":
        return "tool_arguments"
    if msg["role"] == "tool":
        return "tool_result"
    return "content"


def iter_strings(node: Any, path: list[Any]) -> Any:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from iter_strings(v, [*path, k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from iter_strings(v, [*path, i])


def _all_name_parts() -> list[str]:
    parts: set[str] = set()
    for given, surnames in CULTURES.values():
        for n in given + surnames:
            parts.update(w for w in n.split() if len(w) >= 3 and w[0].isupper())
    for names in SCRIPT_NAMES.values():
        for full, first, _ in names:
            parts.add(first)
            parts.update(w for w in full.split() if len(w) >= 2)
    return sorted(parts, key=len, reverse=True)


NAME_RE = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in _all_name_parts()) + r")(?!\w)")
REJECTS: Counter[str] = Counter()


def problems(body: dict[str, Any], spans: list[dict[str, Any]], negative: bool) -> list[str]:
    """Reasons a generated conversation is unusable (empty list: fine)."""
    out = []
    covered: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    for sp in spans:
        covered.setdefault(tuple(sp["path"]), []).append((sp["start"], sp["end"]))
    for ranges in covered.values():
        ranges.sort()
        for (_, e1), (s2, _) in itertools.pairwise(ranges):
            if s2 < e1:
                out.append("overlap")

    def is_covered(path: tuple[Any, ...], s: int, e: int) -> bool:
        return any(a <= s and e <= b for a, b in covered.get(path, []))

    values = {(sp["value"], sp["label"]) for sp in spans}
    for path_l, text in iter_strings(body, []):
        path = tuple(path_l)
        for value, label in values:
            if len(value) < 2:
                continue
            flags = re.IGNORECASE if label == PER and value.islower() else 0
            for m in re.finditer(r"(?<![\w])" + re.escape(value) + r"(?![\w])", text, flags):
                if not is_covered(path, m.start(), m.end()):
                    out.append(f"unlabelled {label} {value!r}")
        for m in NAME_RE.finditer(text):
            if not is_covered(path, m.start(), m.end()):
                out.append(f"stray name {m.group(0)!r}")
    return out


def validate_body(body: dict[str, Any]) -> None:
    assert set(body) <= {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "user",
        "temperature",
        "max_tokens",
    }, set(body)
    msgs = body["messages"]
    assert 3 <= len(msgs) <= 12, len(msgs)
    pending: list[str] = []
    for m in msgs:
        assert m["role"] in ("system", "user", "assistant", "tool"), m["role"]
        if m["role"] == "tool":
            assert m["tool_call_id"] == pending.pop(0)
            assert isinstance(m["content"], str)
            continue
        assert not pending, "tool results missing"
        if "name" in m:
            assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", m["name"]), m["name"]
        for tc in m.get("tool_calls", []):
            assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tc["function"]["name"])
            json.loads(tc["function"]["arguments"])
            pending.append(tc["id"])
        assert (m["content"] is None and m.get("tool_calls")) or isinstance(m["content"], str)
    assert not pending
    names = [t["function"]["name"] for t in body.get("tools", [])]
    assert len(names) == len(set(names))
    for m in msgs:
        for tc in m.get("tool_calls", []):
            if names:
                assert tc["function"]["name"] in names, tc["function"]["name"]


# --------------------------------------------------------------------------------------------
# Phrasing shared by several domains.  Label words ("DOB", "MRN#", "Reisepass", ...) are
# format families and are used by both splits; the sentences around them are split.
# --------------------------------------------------------------------------------------------

DOB_EN = [
    "DOB {dob}",
    "DOB: {dob}",
    "born on {dob}",
    "date of birth {dob}",
    "d.o.b. {dob}",
    "born {dob}",
    "date of birth is {dob}",
    "birthdate {dob}",
]
PASS_EN = [
    "passport {p}",
    "passport no. {p}",
    "passport number {p}",
    "passport #{p}",
    "passport No {p}",
]
MRN_EN = [
    "MRN {m}",
    "MRN# {m}",
    "M.R.N. {m}",
    "Med Rec No. {m}",
    "medical record number {m}",
    "MR number {m}",
    "patient record #{m}",
    "MRN: {m}",
]

# language -> key -> sentences.  {name} {first} {dob} {addr} {phone} {email} {p} {iban}
PHRASES: dict[str, dict[str, list[str]]] = {
    "fr": {
        "dob": [
            "née le {dob}",
            "date de naissance : {dob}",
            "né le {dob}",
            "date de naissance {dob}",
        ],
        "pass": [
            "passeport {p}",
            "numéro de passeport {p}",
            "passeport n° {p}",
            "mon passeport : {p}",
        ],
        "intro": [
            "Bonjour, je m'appelle {name}",
            "Bonjour, ici {name}",
            "Bonsoir, {name} à l'appareil",
            "Bonjour madame, monsieur, je suis {name}",
        ],
        "addr": [
            "j'habite au {addr}",
            "ma nouvelle adresse est {addr}",
            "l'adresse de livraison c'est {addr}",
            "nous avons déménagé au {addr}",
        ],
        "phone": [
            "vous pouvez me joindre au {phone}",
            "mon portable : {phone}",
            "rappelez-moi au {phone} svp",
            "mon numéro a changé, c'est le {phone}",
        ],
        "email": [
            "mon e-mail : {email}",
            "écrivez-moi à {email}",
            "mon adresse mail est {email}",
            "mettez {email} en copie",
        ],
        "iban": [
            "mon IBAN est {iban}",
            "voici mon RIB : {iban}",
            "virez sur {iban}",
            "nouvel IBAN : {iban}",
        ],
        "ask": [
            "je voudrais mettre à jour mes coordonnées.",
            "j'ai un souci avec mon dossier.",
            "pouvez-vous vérifier mon inscription ?",
            "je vous écris pour une réclamation.",
        ],
        "thanks": [
            "Merci beaucoup, bonne journée !",
            "Merci, c'est parfait.",
            "Super, merci pour votre aide.",
            "D'accord, merci.",
        ],
        "reply": [
            "Merci {first}, j'ai bien mis à jour votre dossier.",
            "C'est noté, {first}. Vous recevrez une confirmation par e-mail.",
            "Parfait, tout est enregistré. Autre chose ?",
            "Merci pour ces informations, votre demande est en cours de traitement.",
        ],
    },
    "de": {
        "dob": ["geboren am {dob}", "Geburtsdatum: {dob}", "geb. {dob}", "Geburtsdatum {dob}"],
        "pass": ["Reisepass {p}", "Reisepassnummer {p}", "Passnummer: {p}", "Reisepass-Nr. {p}"],
        "intro": [
            "Guten Tag, mein Name ist {name}",
            "Hallo, hier ist {name}",
            "Sehr geehrte Damen und Herren, ich bin {name}",
            "Moin, {name} hier",
        ],
        "addr": [
            "ich wohne in der {addr}",
            "meine neue Anschrift lautet {addr}",
            "bitte an {addr} liefern",
            "wir sind umgezogen: {addr}",
        ],
        "phone": [
            "Sie erreichen mich unter {phone}",
            "meine Handynummer: {phone}",
            "bitte rufen Sie mich unter {phone} zurück",
            "Telefon: {phone}",
        ],
        "email": [
            "meine E-Mail ist {email}",
            "schreiben Sie mir an {email}",
            "E-Mail-Adresse: {email}",
            "bitte an {email} schicken",
        ],
        "iban": [
            "meine IBAN lautet {iban}",
            "Bankverbindung: {iban}",
            "bitte überweisen Sie auf {iban}",
            "neue IBAN: {iban}",
        ],
        "ask": [
            "ich möchte meine Daten aktualisieren.",
            "ich habe eine Frage zu meinem Vertrag.",
            "können Sie meine Anmeldung prüfen?",
            "ich habe ein Problem mit meiner Bestellung.",
        ],
        "thanks": [
            "Vielen Dank und schönen Tag noch!",
            "Danke, passt so.",
            "Super, danke für die schnelle Hilfe.",
            "Alles klar, danke.",
        ],
        "reply": [
            "Danke, {first}. Ich habe Ihre Daten aktualisiert.",
            "Vielen Dank, die Änderung ist gespeichert.",
            "Alles erledigt, Sie bekommen gleich eine Bestätigung.",
            "Danke für die Angaben, ich kümmere mich darum.",
        ],
    },
    "es": {
        "dob": [
            "nacida el {dob}",
            "fecha de nacimiento: {dob}",
            "nacido el {dob}",
            "f. nacimiento {dob}",
        ],
        "pass": [
            "pasaporte {p}",
            "número de pasaporte {p}",
            "pasaporte n.º {p}",
            "mi pasaporte es {p}",
        ],
        "intro": [
            "Hola, me llamo {name}",
            "Buenos días, soy {name}",
            "Hola, les escribe {name}",
            "Buenas tardes, habla {name}",
        ],
        "addr": [
            "vivo en {addr}",
            "mi nueva dirección es {addr}",
            "la dirección de entrega es {addr}",
            "nos hemos mudado a {addr}",
        ],
        "phone": [
            "mi teléfono es el {phone}",
            "pueden llamarme al {phone}",
            "mi móvil: {phone}",
            "el número nuevo es {phone}",
        ],
        "email": [
            "mi correo es {email}",
            "escríbanme a {email}",
            "correo electrónico: {email}",
            "pongan en copia a {email}",
        ],
        "iban": [
            "mi IBAN es {iban}",
            "la cuenta es {iban}",
            "transfieran a {iban}",
            "IBAN nuevo: {iban}",
        ],
        "ask": [
            "quería actualizar mis datos.",
            "tengo un problema con mi expediente.",
            "¿pueden revisar mi solicitud?",
            "les escribo para poner una reclamación.",
        ],
        "thanks": [
            "¡Muchas gracias!",
            "Perfecto, gracias.",
            "Genial, gracias por la ayuda.",
            "Vale, gracias.",
        ],
        "reply": [
            "Gracias, {first}. He actualizado su ficha.",
            "Hecho, recibirá un correo de confirmación.",
            "Perfecto, queda registrado. ¿Algo más?",
            "Gracias por los datos, su solicitud está en trámite.",
        ],
    },
    "it": {
        "dob": [
            "nato il {dob}",
            "data di nascita: {dob}",
            "nata il {dob}",
            "data di nascita {dob}",
        ],
        "pass": [
            "passaporto {p}",
            "numero di passaporto {p}",
            "passaporto n. {p}",
            "il mio passaporto è {p}",
        ],
        "intro": [
            "Buongiorno, mi chiamo {name}",
            "Salve, sono {name}",
            "Ciao, sono {name}",
            "Buonasera, vi scrive {name}",
        ],
        "addr": [
            "abito in {addr}",
            "il mio nuovo indirizzo è {addr}",
            "spedite a {addr}",
            "ci siamo trasferiti in {addr}",
        ],
        "phone": [
            "potete chiamarmi al {phone}",
            "il mio cellulare è {phone}",
            "numero di telefono: {phone}",
            "richiamatemi al {phone}",
        ],
        "email": [
            "la mia email è {email}",
            "scrivetemi a {email}",
            "indirizzo email: {email}",
            "mettete in copia {email}",
        ],
        "iban": [
            "il mio IBAN è {iban}",
            "coordinate bancarie: {iban}",
            "fate il bonifico su {iban}",
            "nuovo IBAN: {iban}",
        ],
        "ask": [
            "vorrei aggiornare i miei dati.",
            "ho un problema con la mia pratica.",
            "potete verificare la mia iscrizione?",
            "vi scrivo per un reclamo.",
        ],
        "thanks": [
            "Grazie mille!",
            "Perfetto, grazie.",
            "Ottimo, grazie dell'aiuto.",
            "Va bene, grazie.",
        ],
        "reply": [
            "Grazie, {first}. Ho aggiornato la sua scheda.",
            "Fatto, riceverà una email di conferma.",
            "Perfetto, è tutto registrato. Posso aiutarla in altro?",
            "Grazie per i dati, la richiesta è in lavorazione.",
        ],
    },
    "nl": {
        "dob": ["geboren op {dob}", "geboortedatum: {dob}", "geb. {dob}", "geboortedatum {dob}"],
        "pass": ["paspoort {p}", "paspoortnummer {p}", "paspoort nr. {p}", "mijn paspoort is {p}"],
        "intro": [
            "Hallo, mijn naam is {name}",
            "Goedemiddag, u spreekt met {name}",
            "Hoi, met {name}",
            "Beste, ik ben {name}",
        ],
        "addr": [
            "ik woon op {addr}",
            "mijn nieuwe adres is {addr}",
            "graag bezorgen op {addr}",
            "we zijn verhuisd naar {addr}",
        ],
        "phone": [
            "u kunt mij bereiken op {phone}",
            "mijn mobiel: {phone}",
            "bel me terug op {phone}",
            "telefoonnummer: {phone}",
        ],
        "email": [
            "mijn e-mail is {email}",
            "mail me op {email}",
            "e-mailadres: {email}",
            "stuur het naar {email}",
        ],
        "iban": [
            "mijn IBAN is {iban}",
            "rekeningnummer: {iban}",
            "maak het over naar {iban}",
            "nieuw IBAN: {iban}",
        ],
        "ask": [
            "ik wil mijn gegevens bijwerken.",
            "ik heb een probleem met mijn dossier.",
            "kunt u mijn aanvraag controleren?",
            "ik wil een klacht indienen.",
        ],
        "thanks": ["Hartelijk dank!", "Top, bedankt.", "Fijn, dank voor de hulp.", "Oké, dank je."],
        "reply": [
            "Bedankt, {first}. Ik heb uw gegevens bijgewerkt.",
            "Gelukt, u ontvangt een bevestiging per e-mail.",
            "Prima, alles is opgeslagen. Kan ik nog iets doen?",
            "Dank voor de gegevens, uw aanvraag wordt verwerkt.",
        ],
    },
    "pt": {
        "dob": [
            "nascido em {dob}",
            "data de nascimento: {dob}",
            "nascida em {dob}",
            "data de nascimento {dob}",
        ],
        "pass": [
            "passaporte {p}",
            "número do passaporte {p}",
            "passaporte nº {p}",
            "meu passaporte é {p}",
        ],
        "intro": [
            "Olá, meu nome é {name}",
            "Bom dia, sou {name}",
            "Oi, aqui é {name}",
            "Boa tarde, fala {name}",
        ],
        "addr": [
            "moro na {addr}",
            "meu novo endereço é {addr}",
            "entreguem na {addr}",
            "mudamos para {addr}",
        ],
        "phone": [
            "meu telefone é {phone}",
            "podem me ligar no {phone}",
            "meu celular: {phone}",
            "o número novo é {phone}",
        ],
        "email": [
            "meu e-mail é {email}",
            "me escrevam em {email}",
            "e-mail: {email}",
            "coloquem {email} em cópia",
        ],
        "iban": [
            "meu IBAN é {iban}",
            "a conta é {iban}",
            "transfiram para {iban}",
            "IBAN novo: {iban}",
        ],
        "ask": [
            "queria atualizar meus dados.",
            "tenho um problema com meu cadastro.",
            "podem verificar minha inscrição?",
            "quero fazer uma reclamação.",
        ],
        "thanks": [
            "Muito obrigado!",
            "Perfeito, obrigada.",
            "Ótimo, valeu pela ajuda.",
            "Ok, obrigado.",
        ],
        "reply": [
            "Obrigado, {first}. Atualizei o seu cadastro.",
            "Pronto, você vai receber um e-mail de confirmação.",
            "Perfeito, está tudo registrado. Mais alguma coisa?",
            "Obrigado pelos dados, a solicitação está em andamento.",
        ],
    },
}
LANGS = ["fr", "de", "es", "it", "nl", "pt"]


def ph(ctx: Ctx, lang: str, key: str, **kw: object) -> Seg:
    """One sentence of ``key`` in ``lang``; label-bearing keys use the whole list."""
    items = PHRASES[lang][key]
    tpl = ctx.any(items) if key in ("dob", "pass") else ctx.pick(items)
    return F(tpl, **kw)


def en(ctx: Ctx, items: Sequence[str], **kw: object) -> Seg:
    return F(ctx.any(items), **kw)


def casualise(ctx: Ctx, s: Seg) -> Seg:
    """Lower-case the untagged text and drop some punctuation (chat style)."""
    out = Seg()
    pos = 0
    for a, b, lab in sorted(s.marks):
        out = out + s.text[pos:a].lower().replace("'", "").replace(",", "")
        out = out + Tag(s.text[a:b], lab)
        pos = b
    return out + s.text[pos:].lower().replace("'", "").replace(",", "")


# --------------------------------------------------------------------------------------------
# Positive scenarios.  Every fragment list is split by position between dev and heldout.
# --------------------------------------------------------------------------------------------


def half(ctx: Ctx, items: Sequence[Any]) -> list[Any]:
    return list(items[ctx.h :: 2])


def pick_tools(
    ctx: Ctx, builders: Sequence[Callable[[], dict[str, Any]]], k: int
) -> list[dict[str, Any]]:
    mine = half(ctx, builders)
    return [b() for b in ctx.rng.sample(mine, min(k, len(mine)))]


def fname(t: dict[str, Any]) -> str:
    return str(t["function"]["name"])


def support(ctx: Ctx) -> Conv:
    c = Conv(ctx, "customer_support")
    cust, agent = people(ctx, 2)
    company = ctx.pool("company")
    email = cust.email(ctx, corp=False)
    ph_ = phone(ctx)
    addr_old, addr_new = address(ctx), address(ctx)
    bd = birth_date(ctx)
    d = fmt_date(ctx, bd)
    esc = make_person(ctx)
    esc_mail = esc.email(ctx, corp=True)
    c.system(
        F(
            ctx.pick(
                [
                    "You are the virtual support agent for {co}. Verify the customer with two of: email, "
                    "phone, date of birth, billing address. Never repeat full card numbers. Be concise.",
                    "You are Nova, {co}'s customer care assistant. Be friendly, confirm identity before any "
                    "account change, and summarise what you changed at the end.",
                    "System: {co} support desk. Tools are available for account lookup and changes. If the "
                    "customer is angry, apologise once and move on to fixing the problem.",
                    "You help customers of {co} with orders, billing and account details. Escalate legal "
                    "threats or chargebacks to a human. Keep replies under 120 words.",
                ]
            ),
            co=company,
        )
    )
    lookup = [
        lambda: tool(
            "lookup_customer",
            "Find a customer record by email or phone.",
            {"email": prop("string", "Customer email"), "phone": prop("string", "Phone number")},
        ),
        lambda: tool(
            "find_account",
            "Search accounts. Returns the profile and open orders.",
            {
                "query": prop(
                    "string",
                    "Email, phone or full name",
                    examples=[make_person(ctx).email(ctx), phone(ctx)],
                )
            },
        ),
    ]
    t_lookup = half(ctx, lookup)[0]()
    t_update = ctx.pick(
        [
            tool(
                "update_customer",
                "Update contact details on a customer profile.",
                {
                    "customer_id": prop("string", "Internal id"),
                    "address": prop("string", "New address", examples=[address(ctx)]),
                    "phone": prop("string", "New phone", examples=[phone(ctx)]),
                },
                ["customer_id"],
            ),
            tool(
                "change_contact_details",
                "Change address/phone/email of an account.",
                {
                    "account": prop("string", "Account number"),
                    "new_address": prop(
                        "string", F("Postal address, single line, like {a}", a=address(ctx))
                    ),
                    "new_phone": prop("integer", "Phone, digits only, with country code"),
                },
                ["account"],
            ),
        ]
    )
    t_esc = ctx.pick(
        [
            tool(
                "escalate_ticket",
                F(
                    "Escalate to the duty manager {n} <{e}> when the customer asks "
                    "for a supervisor.",
                    n=esc.full(),
                    e=esc_mail,
                ),
                {"reason": prop("string", "Short reason")},
                ["reason"],
            ),
            tool(
                "handoff_to_human",
                F(
                    "Hand the chat to a human agent. Current shift lead: {n}, phone {p}.",
                    n=esc.full(),
                    p=phone(ctx, "us"),
                ),
                {"summary": prop("string", "Summary for the human agent")},
            ),
        ]
    )
    c.tools = [t_lookup, t_update, t_esc]
    casual = ctx.chance(0.35)
    handle = cust.handle(ctx) if ctx.chance(0.35) else None
    opener = F(
        ctx.pick(
            [
                "Hi, I moved last month and my orders keep going to my old place. Can you update it? "
                "The account is under {email}.",
                "hello?? my package never arrived and the tracking says delivered. my email is {email}",
                "Hi there, this is {name}. I need to change the delivery address on my account "
                "({email}) before my next subscription box ships.",
                "I've been charged twice this month. Account email {email}, my name's {name}.",
                "Good morning. I'd like to update my phone number and address please. Email on file is "
                "{email}.",
                "my card got declined but the money left my account?? email is {email}",
            ]
        ),
        email=email,
        name=cust.full(),
    )
    c.user(casualise(ctx, opener) if casual else opener, handle)
    c.assistant(
        F(
            ctx.pick(
                [
                    "Sorry about that! To confirm it's you, could you give me your date of birth and the "
                    "phone number on the account?",
                    "I can help with that. For security, please confirm your date of birth and your current "
                    "billing address.",
                    "Thanks for reaching out. Before I make changes I need to verify you: date of birth and "
                    "the phone number we have on file, please.",
                    "Happy to look into it. Can you confirm the full name on the account and your date of "
                    "birth?",
                ]
            )
        )
    )
    ver = F(
        ctx.pick(
            [
                "sure, {dobx}, phone is {phone}",
                "{dobx}. The phone should be {phone} and the old address was {old}.",
                "It's {name}, {dobx}. You'll have {old} as the address.",
                "ok {dobx} and my number is {phone}",
                "Name: {name}\nDate of birth: {dobv}\nPhone: {phone}\nBilling address: {old}",
                "{name}, {dobx}, and the number ending... actually the full number is {phone}",
                "{name} — surname spelled {sp} — {dobx}, phone {phone}",
                "its {name}, thats {sp}. {dobx}. the old address was {old}",
            ]
        ),
        sp=cust.spelled(ctx),
        dobx=en(ctx, DOB_EN, dob=d),
        dobv=d,
        phone=ph_,
        old=addr_old,
        name=cust.full(),
    )
    c.user(casualise(ctx, ver) if casual else ver, handle)
    cid = f"C-{ctx.digits(7)}"
    q = {"email": email} if fname(t_lookup) == "lookup_customer" else {"query": email}
    record = {
        "customer_id": cid,
        "name": cust.full(),
        "email": email,
        "phone": ph_,
        "date_of_birth": Tag(bd.iso(), DOB),
        "billing_address": addr_old,
        "shipping_address": addr_old,
        "card_on_file": card(ctx) if ctx.chance(0.5) else "visa ****" + ctx.digits(4),
        "last_login_ip": ip(ctx, ctx.any(["pub", "v6"])),
        "orders_open": ctx.rng.randint(0, 4),
        "created": f"20{ctx.rng.randint(15, 23)}-0{ctx.rng.randint(1, 9)}-1{ctx.rng.randint(0, 9)}",
    }
    c.call(fname(t_lookup), q, record, indent=ctx.any([None, 2]))
    c.assistant(
        F(
            ctx.pick(
                [
                    "Thanks {first}, you're verified. What's the new address you'd like on the account?",
                    "Got it, I found your account, {first}. Which address should I switch it to?",
                    "Verified, thank you. I see {old} on file. What should it be changed to?",
                    "Thanks, {first}. I can see the account. Where should future orders go?",
                ]
            ),
            first=cust.first(),
            old=addr_old,
        )
    )
    new = F(
        ctx.pick(
            [
                "{new}. and pls keep the same phone",
                "The new one is {new}. Also my new mobile is {ph2}.",
                "{new} — that's the flat, buzzer says {last}.",
                "please use {new}, thanks",
            ]
        ),
        new=addr_new,
        ph2=(ph2 := phone(ctx)),
        last=cust.last(),
    )
    c.user(casualise(ctx, new) if casual else new, handle)
    if fname(t_update) == "update_customer":
        args: dict[str, Any] = {"customer_id": cid, "address": addr_new}
        if ctx.chance(0.5):
            args["phone"] = ph2
    else:
        args = {"account": cid, "new_address": addr_new}
        if ctx.chance(0.6):
            args["new_phone"] = phone_num(ctx)
    c.call(
        fname(t_update),
        args,
        {"ok": True, "updated": sorted(k for k in args if k not in ("customer_id", "account"))},
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "Done! Your address is now {new}. Anything else I can help with?",
                    "All set, {first}. Future deliveries will go to {new}. The order already in transit "
                    "can't be rerouted, sorry.",
                    "Updated. You'll get a confirmation email at {email} shortly.",
                    "That's changed for you. Is there anything else today?",
                ]
            ),
            new=addr_new,
            first=cust.first(),
            email=email,
        )
    )
    if ctx.chance(0.4) and len(c.messages) <= 10:
        c.user(
            F(
                ctx.pick(
                    [
                        "actually can you also tell {agent} from your billing team that the refund for the "
                        "double charge is still missing? card was {card}",
                        "One more thing: I want a supervisor. Is {agent} still working there?",
                        "also my login shows a device from {ip} which isnt me. should i worry?",
                        "Thanks. Can you also send the receipt to my work address {mail2}?",
                    ]
                ),
                agent=agent.full(),
                card=card(ctx),
                ip=ip(ctx, "pub"),
                mail2=cust.email(ctx, corp=True),
            ),
            handle,
        )
        c.assistant(
            F(
                ctx.pick(
                    [
                        "I've passed that on and flagged it as urgent.",
                        "I'll escalate this now. Someone will be in touch within 24 hours.",
                        "Noted; I've opened a security review on the account and you should reset your "
                        "password.",
                        "Done, it's on its way.",
                    ]
                )
            )
        )
    return c


def clinical(ctx: Ctx) -> Conv:
    c = Conv(ctx, "clinical")
    pt, doc, nurse = people(ctx, 3)
    m = mrn(ctx, nhs=ctx.chance(0.2))
    is_nhs = m.count(" ") == 2 and len(m) == 12
    mrn_ctx = F("NHS number {m}", m=m) if is_nhs else en(ctx, MRN_EN, m=m)
    bd = birth_date(ctx)
    d = fmt_date(ctx, bd)
    ph_ = phone(ctx)
    addr = address(ctx)
    clinic = ctx.pick(
        [
            "Harborview Family Practice",
            "St. Columba Medical Centre",
            "Riverside Cardiology",
            "Northgate Orthopaedics",
            "Lakeshore Pediatrics",
            "Eastfield Dermatology",
        ]
    )
    c.system(
        F(
            ctx.pick(
                [
                    "You are a clinical documentation assistant at {clinic}. Summarise accurately, use "
                    "standard abbreviations, and never invent medications.",
                    "You are the scheduling and triage assistant for {clinic}. Use the EHR tools; confirm "
                    "patient identity with name and date of birth before discussing results.",
                    "You help the care team at {clinic} draft letters and referral notes. The attending "
                    "today is Dr. {doc}.",
                    "Assistant for the nurses' station, {clinic}. Be brief. Flag anything urgent in caps.",
                ]
            ),
            clinic=clinic,
            doc=doc.last(),
        )
    )
    ehr = ctx.pick(
        [
            tool(
                "get_patient",
                "Fetch a patient chart by MRN.",
                {
                    "mrn": prop("string", F("Medical record number, e.g. {m}", m=mrn(ctx))),
                    "dob": prop("string", "Optional DOB check", examples=[dob_iso(ctx)]),
                },
                ["mrn"],
            ),
            tool(
                "ehr_lookup",
                "Look up a patient in the EHR by record number or name+DOB.",
                {
                    "mrn": prop(
                        "integer",
                        F(
                            "Numeric record number (test patient: {m})",
                            m=Tag(str(ctx.rng.randint(1000000, 9999999)), MRN),
                        ),
                    ),
                    "name": prop("string", "Full name"),
                    "dob": prop("string", "YYYY-MM-DD", examples=[dob_iso(ctx)]),
                },
            ),
        ]
    )
    sched = ctx.pick(
        [
            tool(
                "book_appointment",
                F(
                    "Book a slot. Default clinician: Dr. {d} (pager {p}).",
                    d=doc.full(),
                    p=phone(ctx, "us", ext=True),
                ),
                {
                    "mrn": prop("string", "MRN"),
                    "slot": prop("string", "ISO datetime"),
                    "reason": prop("string", "Visit reason"),
                },
                ["mrn", "slot"],
            ),
            tool(
                "create_referral",
                "Create a referral letter to a specialist.",
                {
                    "patient_name": prop("string", "Patient full name"),
                    "specialty": prop(
                        "string",
                        "Specialty",
                        enum=["cardiology", "dermatology", "orthopaedics", "neurology"],
                    ),
                    "notes": prop("string", "Clinical notes"),
                },
                ["patient_name", "specialty"],
            ),
        ]
    )
    c.tools = [ehr, sched]
    ask = F(
        ctx.pick(
            [
                "Can you pull up {name}, {dobx}? {mrnx}. She called about her lab results.",
                "pt {name} ({mrnx}) on the phone asking to move her follow-up, can you check the chart",
                "Please prepare a referral summary for {name}, {dobx}, {mrnx}.",
                "I need the discharge summary for {mrnx} — {name}. Family is asking.",
                "New message from {name} ({dobx}): wants to know if the MRI is covered. {mrnx}.",
                "Triage: {name}, {dobx}, chest tightness since this morning. {mrnx}. Can you check meds?",
            ]
        ),
        name=pt.full(),
        dobx=en(ctx, DOB_EN, dob=d),
        mrnx=mrn_ctx,
    )
    c.user(ask, nurse.handle(ctx) if ctx.chance(0.3) else None)
    if fname(ehr) == "get_patient":
        args: dict[str, Any] = {"mrn": m}
    else:
        digits = re.sub(r"\D", "", m)
        args = (
            {"mrn": Num(digits, MRN)}
            if digits and digits[0] != "0" and digits == m
            else {"name": pt.full(), "dob": Tag(bd.iso(), DOB)}
        )
    ins_ssn = ssn(ctx, "dash")
    chart: dict[str, Any] = {
        "patient": {
            "name": pt.full(),
            "mrn": m,
            "dob": Tag(bd.iso(), DOB),
            "sex": ctx.any(["F", "M"]),
            "phone": ph_,
            "address": addr,
            "emergency_contact": {"name": make_person(ctx).full(), "phone": phone(ctx)},
        },
        "insurance": {
            "payer": ctx.any(["Aetna", "BlueCross", "Kaiser", "UnitedHealthcare"]),
            "member_ssn": ins_ssn,
        },
        "allergies": ctx.any([["penicillin"], [], ["latex", "sulfa"]]),
        "medications": ctx.any(
            [
                ["metformin 500mg BID", "lisinopril 10mg QD"],
                ["atorvastatin 20mg QHS"],
                ["levothyroxine 75mcg QD"],
            ]
        ),
        "last_visit": f"2024-0{ctx.rng.randint(1, 9)}-{ctx.rng.randint(10, 28)}",
        "attending": F("Dr. {x}", x=doc.full()),
        "notes": F(
            ctx.pick(
                [
                    "Pt seen by Dr. {doc}. A1c 7.9, counselled on diet. RTC 3 months.",
                    "Reports intermittent palpitations. ECG NSR. Holter ordered; {nurse} to call with "
                    "results.",
                    "Follow-up after fall. X-ray negative for fracture. Pt lives alone at {addr}.",
                    "Daughter ({rel}, {relph}) is the main contact. Prefers morning appointments.",
                ]
            ),
            doc=doc.last(),
            nurse=nurse.first(),
            addr=addr,
            rel=make_person(ctx).first(),
            relph=phone(ctx),
        ),
    }
    c.call(fname(ehr), args, chart, indent=ctx.any([None, 2]))
    c.assistant(
        F(
            ctx.pick(
                [
                    "Found {name} ({mrnv}). Last visit noted above; allergies: {allergy}. Current "
                    "meds are listed. Do you want me to book the follow-up with Dr. {doc}?",
                    "Chart loaded. {first} is on the medication list shown, no acute flags. I can draft the "
                    "referral now.",
                    "I have the chart for {name}. Emergency contact and insurance are on file. What would "
                    "you like to do next?",
                    "Patient verified: {name}, {mrnv}. Shall I schedule or draft a note?",
                ]
            ),
            name=pt.full(),
            mrnv=m,
            first=pt.first(),
            doc=doc.last(),
            allergy=", ".join(chart["allergies"]) or "none recorded",
        )
    )
    c.user(
        F(
            ctx.pick(
                [
                    "yes book her with {doc} next tuesday 9:30, reason follow-up labs. her new number is {ph2}",
                    "Draft a cardiology referral please. Mention she lives at {addr} and can't drive.",
                    "Book it. Also note the patient asked us to call {ph2} instead of the home phone.",
                    "Go ahead with neurology referral, note MRI from 2024-03-02 attached.",
                ]
            ),
            doc=doc.last(),
            ph2=(ph2 := phone(ctx)),
            addr=addr,
        )
    )
    if fname(sched) == "book_appointment":
        c.call(
            "book_appointment",
            {
                "mrn": m,
                "slot": "2024-06-11T09:30:00",
                "reason": ctx.any(["follow-up labs", "post-op review", "medication review"]),
            },
            {
                "confirmation": f"APT-{ctx.digits(6)}",
                "clinician": F("Dr. {x}", x=doc.full()),
                "location": clinic,
            },
        )
        c.assistant(
            F(
                ctx.pick(
                    [
                        "Booked for Tuesday 09:30 with Dr. {doc}. I've noted the callback number {ph2}.",
                        "Appointment confirmed. Reminder SMS will go to {ph2}.",
                    ]
                ),
                doc=doc.last(),
                ph2=ph2,
            )
        )
    else:
        note = F(
            "{name}, {dobx}, {mrnx}. Referred for evaluation. Address: {addr}. Contact: {ph}.",
            name=pt.full(),
            dobx=en(ctx, DOB_EN, dob=d),
            mrnx=mrn_ctx,
            addr=addr,
            ph=ph2,
        )
        c.call(
            "create_referral",
            {
                "patient_name": pt.full(),
                "specialty": ctx.any(["cardiology", "neurology"]),
                "notes": note,
            },
            {"status": "draft", "id": f"REF-{ctx.digits(5)}"},
        )
        c.assistant(
            F(
                ctx.pick(
                    [
                        "Referral drafted for {name}. Please review and sign.",
                        "Draft saved. It includes the DOB, MRN and contact number; sign when ready.",
                    ]
                ),
                name=pt.full(),
            )
        )
    return c


def hr(ctx: Ctx) -> Conv:
    c = Conv(ctx, "hr")
    emp, mgr, hrp = people(ctx, 3)
    company = ctx.pool("company")
    bd = birth_date(ctx)
    s = ssn(ctx)
    acct = iban(ctx)
    addr = address(ctx)
    pp = passport(ctx)
    mail = emp.email(ctx, corp=False)
    c.system(
        F(
            ctx.pick(
                [
                    "You are the HR operations assistant at {co}. You can create employee records and "
                    "payroll entries. Double-check identifiers before submitting.",
                    "You are {co}'s people-team copilot. Onboarding questions go through the HRIS tools. "
                    "Escalations: {hr} ({hrmail}).",
                    "HR helpdesk assistant for {co}. Answer policy questions and update records on request.",
                    "You assist {co} recruiters and HR partners with onboarding paperwork (I-9, W-4, payroll).",
                ]
            ),
            co=company,
            hr=hrp.full(),
            hrmail=hrp.email(ctx, corp=True),
        )
    )
    create = ctx.pick(
        [
            tool(
                "create_employee",
                "Create an employee in the HRIS.",
                {
                    "legal_name": prop("string", "Legal full name"),
                    "ssn": prop(
                        "integer",
                        F("Social security number, digits only, e.g. {s}", s=ssn(ctx, "plain")),
                    ),
                    "date_of_birth": prop("string", "ISO date"),
                    "home_address": prop("string", "Home address"),
                    "personal_email": prop("string", "Personal email"),
                    "manager": prop("string", "Manager full name", examples=[mgr.full()]),
                },
                ["legal_name", "ssn"],
            ),
            tool(
                "hris_onboard",
                F(
                    "Onboard a new hire. Sends the welcome pack from {n} <{e}>.",
                    n=hrp.full(),
                    e=hrp.email(ctx, corp=True),
                ),
                {
                    "name": prop("string", "Full name"),
                    "tax_id": prop("string", "SSN / tax id", examples=[ssn(ctx, "dash")]),
                    "birthDate": prop("string", "YYYY-MM-DD"),
                    "passport_number": prop("string", "For I-9 list A"),
                    "address": prop("string", "Home address"),
                },
                ["name"],
            ),
        ]
    )
    payroll = ctx.pick(
        [
            tool(
                "set_payroll_account",
                "Set the bank account for salary payments.",
                {
                    "employee_id": prop("string", "Employee id"),
                    "iban": prop("string", "IBAN", examples=[iban(ctx)]),
                },
                ["employee_id", "iban"],
            ),
            tool(
                "update_bank_details",
                "Change direct-deposit details.",
                {
                    "employee": prop("string", "Employee id"),
                    "iban": prop("string", F("IBAN, e.g. {i}", i=iban(ctx))),
                    "holder": prop("string", "Account holder"),
                },
            ),
        ]
    )
    c.tools = [create, payroll]
    intro = F(
        ctx.pick(
            [
                "Hi! Starting the onboarding for {name}, joins {mgr}'s team on Monday. Details below.",
                "new hire paperwork for {name} came in, can you set them up? manager is {mgr}",
                "Please create the record for our new analyst {name}. Reporting to {mgr}.",
                "Can you onboard {name}? Offer signed yesterday; {mgrf} wants the laptop ready by Monday.",
            ]
        ),
        name=emp.full(),
        mgr=mgr.full(),
        mgrf=mgr.first(),
    )
    details = F(
        ctx.pick(
            [
                "\n\nLegal name: {name}\nSSN: {ssn}\n{dobl}\nAddress: {addr}\nPersonal email: {mail}\n"
                "Bank (IBAN): {iban}\nWork authorisation: {ppl}",
                "\n\n- name {name}\n- ssn {ssn}\n- {dobl}\n- lives at {addr}\n- {mail}\n- iban {iban}",
                " Her SSN is {ssn}, {dobl}, home address {addr}. Salary to {iban}. {ppl}.",
                " SSN {ssn}; {dobl}; {ppl}; address {addr}; personal mail {mail}.",
            ]
        ),
        name=emp.full(),
        ssn=s,
        dobl=en(ctx, DOB_EN, dob=fmt_date(ctx, bd)),
        addr=addr,
        mail=mail,
        iban=acct,
        ppl=en(ctx, PASS_EN, p=pp),
    )
    c.user(intro + details, hrp.handle(ctx) if ctx.chance(0.3) else None)
    eid = f"E{ctx.digits(6)}"
    ssn_d = re.sub(r"\D", "", s)
    if fname(create) == "create_employee":
        args: dict[str, Any] = {
            "legal_name": emp.full(),
            "ssn": Num(ssn_d, SSN) if ssn_d[0] != "0" else Tag(ssn_d, SSN),
            "date_of_birth": Tag(bd.iso(), DOB),
            "home_address": addr,
            "personal_email": mail,
            "manager": mgr.full(),
        }
    else:
        args = {
            "name": emp.full(),
            "tax_id": Tag(ssn_d, SSN) if ctx.chance(0.5) else s,
            "birthDate": Tag(bd.iso(), DOB),
            "passport_number": pp,
            "address": addr,
        }
    c.call(
        fname(create), args, {"employee_id": eid, "status": "created", "start_date": "2024-07-01"}
    )
    if fname(payroll) == "set_payroll_account":
        pargs: dict[str, Any] = {"employee_id": eid, "iban": Tag(str(acct).replace(" ", ""), IBAN)}
    else:
        pargs = {"employee": eid, "iban": acct, "holder": emp.full()}
    c.call(
        fname(payroll),
        pargs,
        F(
            ctx.pick(
                [
                    "OK: payroll account set for {eid}. First payment run 2024-07-25.",
                    "bank details updated; verification micro-deposit scheduled",
                ]
            ),
            eid=eid,
        ),
        content=F(
            ctx.pick(
                [
                    "Record created. Setting up payroll now.",
                    "Employee created, now the bank details.",
                ]
            )
        ),
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "{first} is set up as {eid}, with payroll going to the account ending {tail}. {mgr} "
                    "will get the welcome email.",
                    "Done. {name} ({eid}) exists in the HRIS and the salary account is saved.",
                    "All done for {first}. Anything else for the onboarding?",
                    "Onboarding complete. Reminder: the I-9 needs to be verified in person within 3 days.",
                ]
            ),
            first=emp.first(),
            eid=eid,
            tail=str(acct).replace(" ", "")[-4:],
            mgr=mgr.first(),
            name=emp.full(),
        )
    )
    if ctx.chance(0.5):
        c.user(
            F(
                ctx.pick(
                    [
                        "thanks! oh and {mgrf} asked if the emergency contact can be {rel} at {relph}",
                        "Also please update {other}'s address to {addr2}, she moved.",
                        "One more: {other} says her SSN was typed wrong, it should be {ssn2}.",
                        "can you also note the passport for the visa file: {ppl2}",
                    ]
                ),
                mgrf=mgr.first(),
                rel=make_person(ctx).full(),
                relph=phone(ctx),
                other=make_person(ctx).full(),
                addr2=address(ctx),
                ssn2=ssn(ctx),
                ppl2=en(ctx, PASS_EN, p=passport(ctx)),
            )
        )
        c.assistant(
            F(
                ctx.pick(
                    [
                        "Noted and saved.",
                        "Updated.",
                        "Done, record amended.",
                        "I've added that to the file.",
                    ]
                )
            )
        )
    return c


def finance(ctx: Ctx) -> Conv:
    c = Conv(ctx, "finance")
    cl, rm = people(ctx, 2)
    bank = ctx.pick(
        [
            "Lumen Bank",
            "Polaris Finance",
            "Fjord Savings",
            "Meridian Trust",
            "Cobalt Credit Union",
            "Aurora Banking",
        ]
    )
    bd = birth_date(ctx)
    src, dst = iban(ctx), iban(ctx)
    cc = card(ctx)
    addr = address(ctx)
    c.system(
        F(
            ctx.pick(
                [
                    "You are {bank}'s banking assistant. KYC checks must pass before transfers over 1,000 "
                    "EUR. Never reveal internal risk scores.",
                    "You are a back-office assistant for {bank} relationship managers. Use the tools for "
                    "KYC, transfers and card disputes.",
                    "Assistant for {bank} fraud & disputes team. Collect: cardholder, card number, "
                    "transaction, reason.",
                    "{bank} virtual assistant. Be precise with amounts and account numbers.",
                ]
            ),
            bank=bank,
        )
    )
    t_kyc = ctx.pick(
        [
            tool(
                "kyc_check",
                "Run KYC on a person.",
                {
                    "full_name": prop("string", "Name"),
                    "dob": prop("string", "Date of birth"),
                    "passport": prop("string", "Passport number", examples=[passport(ctx)]),
                    "tax_id": prop("integer", "US SSN/ITIN, digits"),
                },
                ["full_name", "dob"],
            ),
            tool(
                "verify_identity",
                F("Identity verification. Escalations to {n}, {p}.", n=rm.full(), p=phone(ctx)),
                {
                    "name": prop("string", "Full legal name"),
                    "birthDate": prop("string", "ISO date"),
                    "document": prop(
                        "string", F("Passport or ID number, e.g. {p}", p=passport(ctx))
                    ),
                    "address": prop("string", "Residential address"),
                },
            ),
        ]
    )
    t_tx = ctx.pick(
        [
            tool(
                "create_transfer",
                "SEPA transfer between accounts.",
                {
                    "from_iban": prop("string", "Debtor IBAN", examples=[iban(ctx)]),
                    "to_iban": prop("string", "Creditor IBAN"),
                    "amount": prop("number", "Amount"),
                    "reference": prop("string", "Remittance info"),
                },
                ["from_iban", "to_iban", "amount"],
            ),
            tool(
                "open_card_dispute",
                "Open a chargeback for a card transaction.",
                {
                    "card_number": prop("string", "PAN", examples=[card(ctx)]),
                    "amount": prop("number", "Amount"),
                    "merchant": prop("string", "Merchant"),
                    "cardholder": prop("string", "Name"),
                },
                ["card_number", "amount"],
            ),
        ]
    )
    c.tools = [t_kyc, t_tx]
    pp = passport(ctx)
    s_num = ssn_num(ctx)
    c.user(
        F(
            ctx.pick(
                [
                    "Client {name} wants to move 12,400 EUR from {src} to {dst} (her sister's account). "
                    "{dobl}, {ppl}. Address on file {addr}.",
                    "hi, I'd like to dispute a charge of $389.20 from 'QuickFlights Ltd' on my card {card}. "
                    "I'm {name}, {dobl}.",
                    "Please run KYC for {name}, {dobl}, {ppl}, residing at {addr}, then send 2,500.00 from "
                    "{src} to {dst} ref 'rent June'.",
                    "My card {card} was charged twice at a hotel in Lisbon. Cardholder {name}, my phone is "
                    "{phone}.",
                ]
            ),
            name=cl.full(),
            src=src,
            dst=dst,
            dobl=en(ctx, DOB_EN, dob=fmt_date(ctx, bd)),
            ppl=en(ctx, PASS_EN, p=pp),
            addr=addr,
            card=cc,
            phone=phone(ctx),
        )
    )
    if fname(t_kyc) == "kyc_check":
        kargs: dict[str, Any] = {"full_name": cl.full(), "dob": Tag(bd.iso(), DOB), "passport": pp}
        if ctx.chance(0.5):
            kargs["tax_id"] = s_num
    else:
        kargs = {
            "name": cl.full(),
            "birthDate": Tag(bd.iso(), DOB),
            "document": pp,
            "address": addr,
        }
    c.call(
        fname(t_kyc),
        kargs,
        {
            "result": ctx.any(["pass", "pass", "review"]),
            "pep": False,
            "sanctions_hits": 0,
            "matched_name": cl.full(),
            "checked_at": "2024-05-02T10:14:09Z",
        },
    )
    if fname(t_tx) == "create_transfer":
        targs: dict[str, Any] = {
            "from_iban": Tag(str(src).replace(" ", ""), IBAN),
            "to_iban": Tag(str(dst).replace(" ", ""), IBAN),
            "amount": ctx.any([2500.0, 12400.0, 980.5]),
            "reference": ctx.any(["rent June", "invoice 2024-118", "gift"]),
        }
        res: Any = {
            "status": "accepted",
            "end_to_end_id": f"E2E{ctx.digits(12)}",
            "debtor": cl.full(),
        }
    else:
        targs = {
            "card_number": cc if ctx.chance(0.5) else card_num(ctx),
            "amount": 389.2,
            "merchant": "QuickFlights Ltd",
            "cardholder": cl.full(),
        }
        res = {"dispute_id": f"DSP-{ctx.digits(7)}", "status": "opened", "provisional_credit": True}
    c.call(
        fname(t_tx),
        targs,
        res,
        content=ctx.pick(["KYC passed, proceeding.", None, None, "Identity verified."]),
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "Done. {first}'s request is processed; reference {ref}. Funds usually arrive in one "
                    "business day.",
                    "I've completed the checks and submitted it. Anything else for {name}?",
                    "Submitted. Please tell {first} to expect a confirmation letter at {addr}.",
                    "All set. Note that the provisional credit appears within 2 days.",
                ]
            ),
            first=cl.first(),
            name=cl.full(),
            ref=f"R{ctx.digits(8)}",
            addr=addr,
        )
    )
    if ctx.chance(0.5):
        c.user(
            F(
                ctx.pick(
                    [
                        "Also she asked for the IBAN of her savings again, it's {iban}? can you confirm it's "
                        "valid",
                        "Can you email the statement to {mail}? Her RM is {rm}.",
                        "the client also wants to add a joint holder, {other}, {dobl2}",
                        "Last thing: update her phone to {phone} please.",
                    ]
                ),
                iban=iban(ctx),
                mail=cl.email(ctx),
                rm=rm.full(),
                other=make_person(ctx).full(),
                dobl2=en(ctx, DOB_EN, dob=dob(ctx)),
                phone=phone(ctx),
            )
        )
        c.assistant(
            ctx.pick(
                [
                    "Yes, the checksum is valid.",
                    "Sent.",
                    "I've created a request; the joint holder must complete KYC too.",
                    "Phone number updated.",
                ]
            )
        )
    return c


HEXD = "0123456789abcdef"


def cred_paste(ctx: Ctx) -> tuple[Seg, list[Tag]]:
    """A realistic paste containing secrets: .env, credentials file, k8s Secret, diff, ..."""
    kind = ctx.any(["env", "aws", "k8s", "diff", "conn", "yaml", "curl", "key"])
    pw = password(ctx, url_safe=True)
    if kind == "env":
        kid, sec, gh = aws_key_id(ctx), aws_secret(ctx), github_token(ctx)
        text = cat(
            "```\n# .env.production\nNODE_ENV=production\nPORT=8080\nAWS_REGION=eu-west-1\n"
            "AWS_ACCESS_KEY_ID=",
            kid,
            "\nAWS_SECRET_ACCESS_KEY=",
            sec,
            "\nGITHUB_TOKEN=",
            gh,
            "\nSTRIPE_SECRET_KEY=",
            (sk := stripe_key(ctx)),
            "\nDATABASE_URL=postgres://app_user:",
            pw,
            "@",
            ctx.pool("host"),
            "/orders\nLOG_LEVEL=info\n```",
        )
        return text, [kid, sec, gh, sk, pw]
    if kind == "aws":
        kid, sec = aws_key_id(ctx), aws_secret(ctx)
        kid2, sec2 = aws_key_id(ctx), aws_secret(ctx)
        text = cat(
            "~/.aws/credentials:\n\n[default]\naws_access_key_id = ",
            kid,
            "\naws_secret_access_key = ",
            sec,
            "\n\n[prod-admin]\naws_access_key_id = ",
            kid2,
            "\naws_secret_access_key = ",
            sec2,
            "\nregion = us-east-1\n",
        )
        return text, [kid, sec, kid2, sec2]
    if kind == "k8s":
        pw2 = password(ctx)
        tok = api_key(ctx)
        text = cat(
            "```yaml\napiVersion: v1\nkind: Secret\nmetadata:\n  name: payments-db\n"
            "  namespace: prod\ntype: Opaque\ndata:\n  username: cGF5bWVudHM=\n"
            "  password: ",
            b64_cred(str(pw2)),
            "\n  api-key: ",
            b64_cred(str(tok)),
            "\nstringData:\n  SMTP_PASSWORD: ",
            pw,
            "\n```",
        )
        return text, [pw2, tok, pw]
    if kind == "diff":
        old, new = aws_secret(ctx), aws_secret(ctx)
        kid = aws_key_id(ctx)
        text = cat(
            "```diff\ndiff --git a/config/settings.py b/config/settings.py\nindex 3f2a9c1..8"
            "b04d7e 100644\n--- a/config/settings.py\n+++ b/config/settings.py\n"
            '@@ -12,7 +12,8 @@ DEBUG = False\n AWS_REGION = "eu-central-1"\n'
            '-AWS_SECRET_ACCESS_KEY = "',
            old,
            '"\n+AWS_ACCESS_KEY_ID = "',
            kid,
            '"\n+AWS_SECRET_ACCESS_KEY = "',
            new,
            '"\n SLACK_CHANNEL = "#deploys"\n```',
        )
        return text, [old, kid, new]
    if kind == "conn":
        pw2 = password(ctx, url_safe=True)
        text = cat(
            "conn strings from the old box:\n  postgres://etl:",
            pw,
            "@",
            ctx.pool("host"),
            ":5432/warehouse\n  mysql://reporting:",
            pw2,
            "@",
            ctx.pool("host"),
            "/reports?ssl=true\n  redis://:",
            (pw3 := password(ctx, url_safe=True)),
            "@cache.internal:6379/0",
        )
        return text, [pw, pw2, pw3]
    if kind == "yaml":
        sl = slack_token(ctx)
        text = cat(
            "```yaml\nnotifications:\n  slack:\n    token: ",
            sl,
            "\n    channel: '#oncall'\ndatabase:\n  host: ",
            ctx.pool("host"),
            "\n  user: svc_billing\n  password: ",
            pw,
            "\n```",
        )
        return text, [sl, pw]
    if kind == "curl":
        j = jwt(ctx)
        text = cat(
            "curl -s https://api.internal.example/v2/orders \\\n  -H 'Authorization: Bearer ",
            j,
            "' \\\n  -H 'Content-Type: application/json'",
        )
        return text, [j]
    pk = private_key(ctx)
    return cat("here is the deploy key that was on the jump host:\n\n", pk), [pk]


def devops(ctx: Ctx) -> Conv:
    c = Conv(ctx, "devops")
    eng, oncall = people(ctx, 2)
    c.system(
        F(
            ctx.pick(
                [
                    "You are an SRE assistant with shell and log access. Prefer read-only commands. Never "
                    "echo secrets back in full.",
                    "You are the incident copilot for the platform team. Current on-call: {oc} ({ocmail}).",
                    "You help engineers debug CI/CD pipelines and cloud infrastructure.",
                    "DevOps helper bot. Tools: run_shell, fetch_logs, page. Be terse.",
                ]
            ),
            oc=oncall.full(),
            ocmail=oncall.email(ctx, corp=True),
        )
    )
    t_logs = ctx.pick(
        [
            tool(
                "fetch_logs",
                "Fetch recent logs for a service.",
                {
                    "service": prop("string", "Service name"),
                    "since": prop("string", "e.g. 30m"),
                    "host": prop("string", "Host IP", examples=[ip(ctx, "priv")]),
                },
                ["service"],
            ),
            tool(
                "query_logs",
                F(
                    "Run a log query (LogQL). Office egress is {a} and {b}.",
                    a=ip(ctx, "pub"),
                    b=ip(ctx, "v6"),
                ),
                {"query": prop("string", "LogQL")},
                ["query"],
            ),
        ]
    )
    t_act = ctx.pick(
        [
            tool(
                "rotate_secret",
                "Rotate a secret in the vault and redeploy consumers.",
                {
                    "name": prop("string", "Secret name"),
                    "new_value": prop(
                        "string", F("New value. Current deployer key id is {k}.", k=aws_key_id(ctx))
                    ),
                },
                ["name"],
            ),
            tool(
                "page_oncall",
                F(
                    "Page the on-call engineer. Fallback: {n} at {p}.",
                    n=oncall.full(),
                    p=phone(ctx, ctx.any(["us", "uk", "de", "in"])),
                ),
                {
                    "message": prop("string", "Page text"),
                    "severity": prop("string", "sev", enum=["sev1", "sev2", "sev3"]),
                },
            ),
        ]
    )
    t_rev = ctx.pick(
        [
            tool(
                "revoke_credential",
                F(
                    "Revoke a leaked credential at its provider. Break-glass token: {t}",
                    t=github_token(ctx),
                ),
                {"value": prop("string", "The exact secret value")},
                ["value"],
            ),
            tool(
                "invalidate_secret",
                F(
                    "Invalidate a secret everywhere it is cached. The staging "
                    "key {k} may be used for dry runs.",
                    k=stripe_key(ctx),
                ),
                {
                    "secret": prop("string", "Secret value"),
                    "kind": prop("string", "Kind", enum=["aws", "github", "slack", "stripe", "db"]),
                },
                ["secret"],
            ),
        ]
    )
    c.tools = [t_logs, t_act, t_rev]
    paste, secrets = cred_paste(ctx)
    lead = ctx.pick(
        [
            "our deploy broke after someone committed this, can you tell me what's wrong?\n\n",
            "I think I leaked creds in a public gist, which of these need rotating?\n\n",
            "Why does the app still fail to connect? config below\n\n",
            "Security scanner flagged this file. What should we do first?\n\n",
        ]
    )
    c.user(cat(lead, paste), eng.handle(ctx) if ctx.chance(0.4) else None)
    src_ip, int_ip = ip(ctx, "pub"), ip(ctx, "priv")
    svc = ctx.any(["checkout-api", "auth-gateway", "billing-worker", "search-indexer"])
    log = cat(
        f"2024-05-0{ctx.rng.randint(1, 9)}T0{ctx.rng.randint(1, 9)}:1{ctx.rng.randint(0, 9)}:"
        f"{ctx.rng.randint(10, 59)}Z WARN {svc} auth failure user=svc_{svc.split('-')[0]} from ",
        src_ip,
        "\n",
        "2024-05-02T03:12:48Z INFO ",
        svc,
        " upstream ",
        int_ip,
        ":5432 connection refused (retry 3/5)\n",
        "2024-05-02T03:12:49Z ERROR ",
        svc,
        " AccessDenied for key ",
        secrets[0] if str(secrets[0]).startswith(("AKIA", "ASIA")) else "(redacted)",
        "\n",
        "2024-05-02T03:13:02Z INFO ",
        svc,
        " login ok user=",
        eng.email(ctx, corp=True),
        " ip=",
        ip(ctx, ctx.any(["v6", "pub"])),
        "\n",
    )
    largs = (
        {"service": svc, "since": "30m"}
        if fname(t_logs) == "fetch_logs"
        else {"query": f'{{app="{svc}"}} |= "error"'}
    )
    c.call(
        fname(t_logs),
        largs,
        log,
        content=ctx.pick(["Let me check the service logs first.", None, "Checking logs.", None]),
    )
    first_secret = secrets[0]
    c.assistant(
        F(
            ctx.pick(
                [
                    "Those are live credentials. Rotate them now, in this order: the key `{s}` first, "
                    "then everything else in the file. The logs also show failed auth from {ip}, which is "
                    "not one of our egress IPs.",
                    "Several secrets are exposed in plain text (e.g. `{s}`). Treat them as compromised. "
                    "I'd also block {ip}; it's hammering the auth endpoint.",
                    "The connection failures are to {iip}. Separately: never commit values like `{s}`; "
                    "move them to the secret manager.",
                    "Rotate `{s}` and the rest immediately; revoke rather than delete so you keep the audit "
                    "trail. {ip} showed up in the logs too.",
                ]
            ),
            s=first_secret,
            ip=src_ip,
            iip=int_ip,
        )
    )
    leak = next((s for s in secrets if "\n" not in s), None)
    if leak is not None and len(c.messages) <= 6:
        key = "value" if fname(t_rev) == "revoke_credential" else "secret"
        c.call(
            fname(t_rev),
            {key: leak},
            {"revoked": True, "fingerprint": ctx.chars(16, HEXD)},
            content=ctx.pick(["Revoking the exposed key first.", None]),
        )
    if fname(t_act) == "rotate_secret":
        newv = ctx.any([aws_secret, password, api_key])(ctx)
        c.user(
            ctx.pick(
                [
                    "ok rotate the first one",
                    "yes do it",
                    "go ahead and rotate",
                    "please rotate, we're in prod",
                ]
            ),
            None,
        )
        c.call(
            "rotate_secret",
            {"name": ctx.any(["prod/aws/deployer", "payments-db", "ci/github"]), "new_value": newv},
            {"rotated": True, "version": ctx.rng.randint(2, 40), "consumers_restarted": 3},
        )
        c.assistant(
            F(
                "Rotated. New value stored as version {v}; consumers restarted.",
                v=str(ctx.rng.randint(2, 40)),
            )
        )
    else:
        c.user(
            F(
                ctx.pick(
                    [
                        "page {oc}, this is a sev2",
                        "can you page whoever is on call",
                        "wake up {ocf} please",
                        "escalate it",
                    ]
                ),
                oc=oncall.full(),
                ocf=oncall.first(),
            )
        )
        c.call(
            "page_oncall",
            {
                "message": F(
                    "Leaked creds in {svc}; attacker IP {ip}. Paged by {eng}.",
                    svc=svc,
                    ip=src_ip,
                    eng=eng.full(),
                ),
                "severity": "sev2",
            },
            {"paged": oncall.full(), "phone": phone(ctx), "ack": False},
        )
        c.assistant(
            F(
                ctx.pick(
                    [
                        "Paged {oc}. Waiting for ack.",
                        "{ocf} has been paged (sev2).",
                    ]
                ),
                oc=oncall.full(),
                ocf=oncall.first(),
            )
        )
    return c


def casual(ctx: Ctx) -> Conv:
    c = Conv(ctx, "casual")
    me, friend, other = people(ctx, 3)
    h_me = me.handle(ctx)
    c.system(
        ctx.pick(
            [
                "You are a helpful assistant in a group chat. Keep it casual.",
                "You're a friendly assistant helping the user with everyday stuff. Short answers.",
                "Personal assistant. You can send messages and look up places.",
                "Be a chill, helpful buddy. Use emojis sparingly.",
            ]
        )
    )
    t_send = ctx.pick(
        [
            tool(
                "send_message",
                "Send a text message.",
                {"to": prop("string", "Phone or contact"), "text": prop("string", "Message")},
                ["to", "text"],
            ),
            tool(
                "send_sms",
                "Send SMS.",
                {"phone": prop("integer", "E.164 digits"), "body": prop("string", "Text")},
                ["phone", "body"],
            ),
        ]
    )
    c.tools = [t_send]
    f_ph = phone(ctx)
    home = address(ctx, ctx.any(["us", "uk"]))
    lines = [
        F(
            ctx.pick(
                [
                    "omg tell {f} im gonna be late, traffic is insane",
                    "can u remind me to call {f} later?? its her bday",
                    "ok so {f} and {o} are coming over saturday, help me plan food lol",
                    "ugh {f} forgot her keys again. what do i text her",
                    "my friend {ff} needs a lift from the airport tmrw, her number is {ph}",
                    "wait whats {f}s last name again... oh right its {sp}",
                ]
            ),
            f=friend.lower(),
            o=other.lower(),
            ff=friend.full(),
            ph=f_ph,
            sp=friend.spelled(ctx),
        ),
        F(
            ctx.pick(
                [
                    "her number is {ph} btw",
                    "send it to {ph}",
                    "shes at {ph}, text pls",
                    "number {ph} i think",
                ]
            ),
            ph=f_ph,
        ),
        F(
            ctx.pick(
                [
                    "also the party is at my place, {home}, tell everyone",
                    "the wifi pw for guests is {pw} if anyone asks",
                    "lol my home router is at {rip} and i cant log in. admin pw was {pw}",
                    "btw {f} sent me her card {cc} for the concert tix, is that safe??",
                    "she was born {bd} so shes turning 30",
                    "ok the address is {home}, apt buzzer says {last}",
                ]
            ),
            home=home,
            pw=password(ctx),
            rip=ip(ctx, "priv"),
            f=friend.lower(),
            cc=card(ctx),
            bd=fmt_date(ctx, birth_date(ctx), "en", ctx.any(["long", "eu_long", "us"])),
            last=friend.last(),
        ),
    ]
    c.user(lines[0], h_me)
    c.assistant(
        F(
            ctx.pick(
                [
                    "Sure! Want me to text {f}?",
                    "Got it. Should I send a message to {f}?",
                    "No problem. What's the best number for {f}?",
                    "On it 👍 want me to message {f} now?",
                ]
            ),
            f=friend.first(),
        )
    )
    c.user(lines[1], h_me)
    text = F(
        ctx.pick(
            [
                "hey {f}! {me} is running late, be there in 20",
                "Hi {f}, reminder from {me}: call back when you can",
                "{f}!! {me} says dont forget saturday",
                "hey its {me}'s assistant, {me} is stuck in traffic",
            ]
        ),
        f=friend.first(),
        me=me.first(),
    )
    if fname(t_send) == "send_message":
        c.call("send_message", {"to": f_ph, "text": text}, {"status": "sent", "id": ctx.digits(9)})
    else:
        digits = re.sub(r"\D", "", str(f_ph).split(" x")[0].split(" ext")[0].split(";")[0])
        arg_ph: Any = Num(digits, PHONE) if digits[0] != "0" else Tag(digits, PHONE)
        c.call("send_sms", {"phone": arg_ph, "body": text}, {"queued": True})
    c.assistant(
        ctx.pick(["Sent! ✅", "Message sent.", "Done, she should get it now.", "Sent it 📱"])
    )
    c.user(lines[2], h_me)
    c.assistant(
        ctx.pick(
            [
                "Noted! Anything else?",
                "Careful sharing that kind of thing in chat, but noted.",
                "Got it. Want me to add that to your notes?",
                "Okay! Let me know if you need anything else.",
            ]
        )
    )
    return c


def travel(ctx: Ctx) -> Conv:
    c = Conv(ctx, "travel")
    pax = people(ctx, ctx.any([1, 2, 2, 3]))
    lead = pax[0]
    mail = lead.email(ctx)
    ph_ = phone(ctx)
    c.system(
        ctx.pick(
            [
                "You are a travel booking assistant. Collect passenger details exactly as in the "
                "passport. Payment via the secure tool only.",
                "You are Wayfarer, an airline and hotel concierge. Confirm names, dates of birth and "
                "passport numbers for international trips.",
                "Travel agent copilot. Search, hold and book flights and hotels.",
                "Corporate travel desk assistant. Apply the company travel policy (economy under 6h).",
            ]
        )
    )
    t_book = ctx.pick(
        [
            tool(
                "book_flight",
                "Book a held itinerary for passengers.",
                {
                    "offer_id": prop("string", "Offer id"),
                    "passengers": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": prop("string", "As in passport"),
                                "dob": prop("string", "YYYY-MM-DD"),
                                "passport_number": prop(
                                    "string", "Passport", examples=[passport(ctx)]
                                ),
                            },
                        },
                    },
                    "payment": prop(
                        "object", F("Card and billing address; corporate card {c}", c=card(ctx))
                    ),
                    "contact_email": prop("string", "Email"),
                    "contact_phone": prop("string", "Phone"),
                },
                ["offer_id", "passengers"],
            ),
            tool(
                "create_booking",
                "Create a flight+hotel booking.",
                {
                    "travellers": {"type": "array", "items": {"type": "object"}},
                    "card_number": prop("string", "Card", examples=[card(ctx)]),
                    "billing_address": prop("string", F("Address, e.g. {a}", a=address(ctx))),
                },
                ["travellers"],
            ),
        ]
    )
    t_search = ctx.pick(
        [
            tool(
                "search_flights",
                "Search flights.",
                {
                    "origin": prop("string", "IATA"),
                    "destination": prop("string", "IATA"),
                    "date": prop("string", "YYYY-MM-DD"),
                },
            ),
            tool(
                "find_offers",
                "Find fares.",
                {
                    "from": prop("string", "City"),
                    "to": prop("string", "City"),
                    "depart": prop("string", "Date"),
                },
            ),
        ]
    )
    c.tools = [t_search, t_book]
    route = ctx.pick(
        [
            ("SFO", "LHR"),
            ("JFK", "CDG"),
            ("FRA", "NRT"),
            ("MAD", "GRU"),
            ("AMS", "BKK"),
            ("BOM", "DXB"),
            ("LOS", "LHR"),
            ("YYZ", "FCO"),
        ]
    )
    c.user(
        F(
            ctx.pick(
                [
                    "Hi, I need flights {o} to {d} on 2024-09-14 for {n} people.",
                    "can you find me something {o}->{d} mid september? {n} pax",
                    "Looking for a {o}-{d} flight on Sept 14, economy, {n} travellers.",
                    "Book {o} to {d}, 14/09, {n} adults please",
                ]
            ),
            o=route[0],
            d=route[1],
            n=str(len(pax)),
        ),
        lead.handle(ctx) if ctx.chance(0.25) else None,
    )
    sargs = (
        {"origin": route[0], "destination": route[1], "date": "2024-09-14"}
        if fname(t_search) == "search_flights"
        else {"from": route[0], "to": route[1], "depart": "2024-09-14"}
    )
    offer = f"OF{ctx.digits(8)}"
    c.call(
        fname(t_search),
        sargs,
        {
            "offers": [
                {
                    "id": offer,
                    "carrier": ctx.any(["LH", "BA", "AF", "KL", "EK"]),
                    "price": 642.1,
                    "depart": "2024-09-14T10:25:00",
                    "stops": 0,
                },
                {
                    "id": f"OF{ctx.digits(8)}",
                    "carrier": "UA",
                    "price": 588.0,
                    "depart": "2024-09-14T18:05:00",
                    "stops": 1,
                },
            ]
        },
    )
    c.assistant(
        ctx.pick(
            [
                "The nonstop at 10:25 is 642.10. Shall I book it? I'll need each passenger's full name, "
                "date of birth and passport number.",
                "Two options found. For booking I need names as in passport, DOB, passport numbers and a "
                "contact email/phone.",
            ]
        )
    )
    rows = []
    dets = []
    for p in pax:
        bd = birth_date(ctx)
        pp = passport(ctx)
        rows.append((p, bd, pp))
        dets.append(
            F(
                ctx.pick(
                    [
                        "{name}, {dobl}, {ppl}",
                        "- {name} / {dobl} / {ppl}",
                        "{name} — {ppl}, {dobl}",
                        "{name} ({dobl}), {ppl}",
                    ]
                ),
                name=p.full(),
                dobl=en(ctx, DOB_EN, dob=fmt_date(ctx, bd)),
                ppl=en(ctx, PASS_EN, p=pp),
            )
        )
    card_ = card(ctx)
    baddr = address(ctx)
    c.user(
        cat(
            ctx.pick(
                [
                    "Book the nonstop.\n",
                    "ok go with the first one\n",
                    "Nonstop please. Passengers:\n",
                    "first option. details:\n",
                ]
            ),
            join("\n", dets),
            F(
                ctx.pick(
                    [
                        "\nContact {mail}, {ph}.",
                        "\nemail {mail} / phone {ph}",
                        "\nReach me at {ph} or {mail}.",
                        "\n{mail}, mobile {ph}",
                    ]
                ),
                mail=mail,
                ph=ph_,
            ),
            F(
                ctx.pick(
                    [
                        "\nPay with {cc}, billing {ba}.",
                        "\ncard {cc}, billing address {ba}",
                    ]
                ),
                cc=card_,
                ba=baddr,
            ),
        )
    )
    if fname(t_book) == "book_flight":
        bargs: dict[str, Any] = {
            "offer_id": offer,
            "passengers": [
                {"name": p.full(), "dob": Tag(bd.iso(), DOB), "passport_number": pp}
                for p, bd, pp in rows
            ],
            "contact_email": mail,
            "contact_phone": ph_,
            "payment": {
                "card_number": card_ if ctx.chance(0.5) else card_num(ctx),
                "billing_address": baddr,
            },
        }
    else:
        bargs = {
            "travellers": [
                {"full_name": p.full(), "birthDate": Tag(bd.iso(), DOB), "passport": pp}
                for p, bd, pp in rows
            ],
            "card_number": card_ if ctx.chance(0.5) else card_num(ctx),
            "billing_address": baddr,
        }
    pnr = ctx.chars(6, "ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
    c.call(
        fname(t_book),
        bargs,
        {
            "pnr": pnr,
            "status": "ticketed",
            "lead_passenger": lead.full(),
            "total": 642.1 * len(pax),
        },
        indent=ctx.any([None, 2]),
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "Booked! PNR {pnr}. E-tickets are on their way to {mail}.",
                    "You're ticketed, {first}. Confirmation {pnr}; I've texted {ph} as well.",
                    "Done — booking reference {pnr}. Check-in opens 24h before departure.",
                    "Confirmed under {name}, locator {pnr}.",
                ]
            ),
            pnr=pnr,
            mail=mail,
            first=lead.first(),
            ph=ph_,
            name=lead.full(),
        )
    )
    return c


def legal(ctx: Ctx) -> Conv:
    c = Conv(ctx, "legal")
    cl, opp, atty = people(ctx, 3)
    firm = ctx.pick(
        [
            "Quillstone LLP",
            "Greystone Legal",
            "Hartwell & Osei",
            "Kanzlei Am Markt",
            "Marlowe Vance LLP",
            "Associados do Porto",
        ]
    )
    bd = birth_date(ctx)
    addr = address(ctx)
    ph_ = phone(ctx)
    mail = cl.email(ctx)
    c.system(
        F(
            ctx.pick(
                [
                    "You are the intake assistant for {firm}. Run a conflict check on every adverse party "
                    "before creating a matter. Do not give legal advice.",
                    "Legal intake bot for {firm}. Gather facts, parties, deadlines. Assigned partner: {atty}.",
                    "You support paralegals at {firm} with new matters and document requests.",
                    "{firm} client intake. Be empathetic and collect contact details.",
                ]
            ),
            firm=firm,
            atty=atty.full(),
        )
    )
    t_conf = ctx.pick(
        [
            tool(
                "conflict_check",
                "Check names against existing clients and adverse parties.",
                {"names": {"type": "array", "items": {"type": "string"}}},
                ["names"],
            ),
            tool(
                "check_conflicts",
                F(
                    "Conflict search. Questions go to {n} <{e}>.",
                    n=atty.full(),
                    e=atty.email(ctx, corp=True),
                ),
                {"party": prop("string", "Full name")},
                ["party"],
            ),
        ]
    )
    t_matter = ctx.pick(
        [
            tool(
                "create_matter",
                "Open a new matter.",
                {
                    "client_name": prop("string", "Client"),
                    "client_dob": prop("string", "DOB"),
                    "client_address": prop("string", "Address"),
                    "ssn": prop("string", F("SSN if US, format {s}", s=ssn(ctx, "dash"))),
                    "summary": prop("string", "Facts"),
                },
                ["client_name", "summary"],
            ),
            tool(
                "open_case",
                "Create a case file.",
                {
                    "client": {
                        "type": "object",
                        "properties": {
                            "name": prop("string", "Name"),
                            "phone": prop("string", "Phone", examples=[phone(ctx)]),
                            "email": prop("string", "Email"),
                        },
                    },
                    "matter_type": prop(
                        "string",
                        "Type",
                        enum=["personal_injury", "immigration", "employment", "tenancy"],
                    ),
                },
            ),
        ]
    )
    c.tools = [t_conf, t_matter]
    kind = ctx.any(["pi", "imm", "emp", "ten"])
    facts = {
        "pi": F(
            "I was hit by a delivery van driven by {opp} outside {addr}. I was treated at "
            "the ER, {mrnx}. My {dobl}.",
            opp=opp.full(),
            addr=addr,
            mrnx=en(ctx, MRN_EN, m=mrn(ctx)),
            dobl=en(ctx, DOB_EN, dob=fmt_date(ctx, bd)),
        ),
        "imm": F(
            "My work visa expires next month and my employer ({opp} is the HR contact) won't "
            "sign the renewal. {ppl}, {dobl}. I live at {addr}.",
            opp=opp.full(),
            ppl=en(ctx, PASS_EN, p=passport(ctx)),
            dobl=en(ctx, DOB_EN, dob=fmt_date(ctx, bd)),
            addr=addr,
        ),
        "emp": F(
            "I was let go after reporting my manager {opp}. They still owe me 3 months of "
            "salary; they used to pay it to {iban}. My SSN is {ssn} if you need it.",
            opp=opp.full(),
            iban=iban(ctx),
            ssn=ssn(ctx),
        ),
        "ten": F(
            "My landlord {opp} is keeping my deposit for the flat at {addr}. I moved out "
            "in March. {dobl}.",
            opp=opp.full(),
            addr=addr,
            dobl=en(ctx, DOB_EN, dob=fmt_date(ctx, bd)),
        ),
    }[kind]
    c.user(
        cat(
            F(
                ctx.pick(
                    [
                        "Hello, my name is {name}. ",
                        "Hi, I'm {name} and I need help. ",
                        "Good afternoon. {name} here. ",
                        "hi. {name}. ",
                    ]
                ),
                name=cl.full(),
            ),
            facts,
            F(
                ctx.pick(
                    [
                        " You can reach me at {ph} or {mail}.",
                        " Phone {ph}, email {mail}.",
                        " My number: {ph}.",
                        " Email me at {mail} please.",
                    ]
                ),
                ph=ph_,
                mail=mail,
            ),
        )
    )
    if fname(t_conf) == "conflict_check":
        c.call(
            "conflict_check",
            {"names": [cl.full(), opp.full()]},
            {"conflicts": [], "searched": [cl.full(), opp.full()]},
        )
    else:
        c.call("check_conflicts", {"party": opp.full()}, {"hits": 0})
    c.assistant(
        F(
            ctx.pick(
                [
                    "Thank you, {first}. No conflicts found. I'll open a file and {atty} will call you "
                    "within two business days.",
                    "I'm sorry you're dealing with this. Our conflict check is clear; I'm creating your "
                    "matter now.",
                    "Thanks for the details. Before we continue: do you have any documents or photos?",
                    "Understood. I've checked for conflicts; we can take your matter.",
                ]
            ),
            first=cl.first(),
            atty=atty.full(),
        )
    )
    if fname(t_matter) == "create_matter":
        margs: dict[str, Any] = {
            "client_name": cl.full(),
            "client_dob": Tag(bd.iso(), DOB),
            "client_address": addr,
            "summary": facts,
        }
        if ctx.chance(0.5):
            margs["ssn"] = ssn(ctx, "dash")
    else:
        margs = {
            "client": {"name": cl.full(), "phone": ph_, "email": mail},
            "matter_type": {
                "pi": "personal_injury",
                "imm": "immigration",
                "emp": "employment",
                "ten": "tenancy",
            }[kind],
        }
    c.call(
        fname(t_matter), margs, {"matter_id": f"M-2024-{ctx.digits(4)}", "assigned_to": atty.full()}
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "Your matter is open and assigned to {atty}. You'll get an engagement letter at {mail}.",
                    "All set. {attyf} will be in touch; keep any letters from {opp}.",
                ]
            ),
            atty=atty.full(),
            attyf=atty.first(),
            mail=mail,
            opp=opp.last(),
        )
    )
    return c


def multilingual(ctx: Ctx) -> Conv:
    lang = ctx.any(LANGS)
    domain = ctx.any(["customer_support", "clinical", "travel", "legal", "hr", "finance"])
    c = Conv(ctx, domain)
    culture = {"fr": "fr", "de": "de", "es": "es", "it": "it", "nl": "nl", "pt": "pt"}[lang]
    p = make_person(ctx, culture if ctx.chance(0.7) else None)
    region = LANG_REGION[lang]
    bd = birth_date(ctx)
    d = fmt_date(ctx, bd, lang)
    addr = address(ctx, region)
    ph_ = phone(ctx, region if region != "pt" else ctx.any(["pt", "br"]))
    mail = p.email(ctx)
    c.system(
        ctx.pick(
            [
                f"You are a multilingual assistant for a {domain.replace('_', ' ')} desk. Reply in the "
                "user's language. Use the tools to update records.",
                f"Assistant ({domain}). Always answer in the language of the user. Confirm identity first.",
            ]
        )
    )
    t_up = ctx.pick(
        [
            tool(
                "update_record",
                "Update a person's record.",
                {
                    "full_name": prop("string", "Name"),
                    "birth_date": prop("string", "ISO date"),
                    "address": prop("string", "Address"),
                    "phone": prop("string", "Phone"),
                    "email": prop("string", "Email"),
                    "iban": prop("string", "IBAN", examples=[iban(ctx)]),
                    "passport_number": prop("string", "Passport"),
                },
                ["full_name"],
            ),
            tool(
                "save_contact",
                "Save contact details.",
                {
                    "name": prop("string", "Name"),
                    "dob": prop("string", "YYYY-MM-DD", examples=[dob_iso(ctx)]),
                    "details": prop(
                        "object", F("Free-form fields, e.g. address ({a})", a=address(ctx))
                    ),
                },
                ["name"],
            ),
        ]
    )
    c.tools = [t_up]
    extras: dict[str, Any] = {}
    parts: list[object] = [
        ph(ctx, lang, "intro", name=p.full()) + ", " + ph(ctx, lang, "dob", dob=d) + ". ",
        ph(ctx, lang, "ask") + " ",
    ]
    keys = ctx.shuffled(["addr", "phone", "email", "iban", "pass"])[: ctx.rng.randint(2, 4)]
    for k in keys:
        if k == "addr":
            extras["address"] = addr
            parts.append(ph(ctx, lang, "addr", addr=addr))
        elif k == "phone":
            extras["phone"] = ph_
            parts.append(ph(ctx, lang, "phone", phone=ph_))
        elif k == "email":
            extras["email"] = mail
            parts.append(ph(ctx, lang, "email", email=mail))
        elif k == "iban":
            extras["iban"] = iban(
                ctx,
                {
                    "fr": "FR",
                    "de": "DE",
                    "es": "ES",
                    "it": "IT",
                    "nl": "NL",
                    "pt": ctx.any(["ES", "FR"]),
                }[lang],
            )
            parts.append(ph(ctx, lang, "iban", iban=extras["iban"]))
        else:
            extras["passport_number"] = passport(ctx)
            parts.append(ph(ctx, lang, "pass", p=extras["passport_number"]))
        parts.append(". " if ctx.chance(0.6) else ", ")
    parts.append(ph(ctx, lang, "thanks"))
    c.user(cat(*parts))
    wait = {
        "fr": ["Un instant, je vérifie.", "Merci, je regarde ça."],
        "de": ["Einen Moment bitte.", "Danke, ich schaue nach."],
        "es": ["Un momento, lo compruebo.", "Gracias, lo reviso."],
        "it": ["Un attimo, controllo.", "Grazie, verifico subito."],
        "nl": ["Een moment, ik kijk even.", "Dank u, ik controleer het."],
        "pt": ["Um momento, vou verificar.", "Obrigado, já confiro."],
    }[lang]
    c.assistant(ctx.pick(wait))
    if fname(t_up) == "update_record":
        args: dict[str, Any] = {"full_name": p.full(), "birth_date": Tag(bd.iso(), DOB)}
        args.update(extras)
    else:
        args = {"name": p.full(), "dob": Tag(bd.iso(), DOB), "details": extras}
    c.call(fname(t_up), args, {"ok": True, "record": f"R-{ctx.digits(6)}"})
    c.assistant(ph(ctx, lang, "reply", first=p.first()))
    return c


POSITIVE = [support, clinical, hr, finance, devops, casual, travel, legal, multilingual]


# --------------------------------------------------------------------------------------------
# Negatives: PII-free conversations full of look-alikes
# --------------------------------------------------------------------------------------------

HEX = "0123456789abcdef"


def lookalikes(ctx: Ctx) -> dict[str, str]:
    r = ctx.rng
    return {
        "ver": f"v{r.randint(1, 4)}.{r.randint(0, 30)}.{r.randint(0, 12)}",
        "dotted": ctx.any(
            [
                f"{r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 99)}",
                f"10.0.{r.randint(17000, 26000)}.{r.randint(100, 4000)}",
                "1.2.3.4",
                f"{r.randint(100, 130)}.0.{r.randint(5000, 6500)}.{r.randint(10, 200)}",
            ]
        ),
        "ts": f"2024-0{r.randint(1, 9)}-{r.randint(10, 28)}T{r.randint(10, 23)}:"
        f"{r.randint(10, 59)}:{r.randint(10, 59)}Z",
        "logts": f"{r.randint(10, 28)}/Mar/2024:{r.randint(10, 23)}:{r.randint(10, 59)}:00 +0000",
        "epoch": str(r.randint(1690000000, 1730000000)),
        "sha": ctx.chars(40, HEX),
        "short": ctx.chars(7, HEX),
        "sha256": ctx.chars(64, HEX),
        "uuid": "-".join(ctx.chars(n, HEX) for n in (8, 4, 4, 4, 12)),
        "isbn": ctx.any(
            ["978-3-16-148410-0", "978-0-13-468599-1", "978-1-4920-5174-1", "978-0-596-52068-7"]
        ),
        "cve": f"CVE-{r.randint(2019, 2024)}-{r.randint(1000, 49999)}",
        "order": ctx.any(
            [f"{ctx.digits(3)}-{ctx.digits(7)}-{ctx.digits(7)}", f"ORD-2024-{ctx.digits(6)}"]
        ),
        "track": ctx.any(
            [
                f"1Z{ctx.chars(6, UPPER + string.digits)}{ctx.digits(10)}",
                f"9400 1000 0000 {ctx.digits(4)} {ctx.digits(4)} {ctx.digits(2)}",
            ]
        ),
        "sku": f"SKU-{ctx.digits(5)}-{ctx.any(['BLK', 'WHT', 'RED', 'XL'])}",
        "port": str(ctx.any([5432, 6379, 8080, 9092, 443, 3000, 27017])),
        "status": str(ctx.any([200, 201, 301, 404, 429, 500, 502, 503])),
        "cidr": ctx.any(["10.0.0.0/16", "172.16.0.0/12", "192.168.0.0/24", "10.42.0.0/20"]),
        "city": ctx.pick(
            [
                "Berlin",
                "Paris",
                "Austin",
                "Sydney",
                "Jordan",
                "Lisbon",
                "Kyoto",
                "Toronto",
                "Cape Town",
                "Oslo",
            ]
        ),
        "product": ctx.any(
            [
                "Alexa",
                "Siri",
                "Claude",
                "Copilot",
                "Jenkins",
                "Grafana",
                "Django",
                "Kafka",
                "Terraform",
                "Postgres",
            ]
        ),
        "build": f"build #{r.randint(1000, 9999)}",
        "amount": f"{r.randint(5, 900)}.{r.randint(10, 99)}",
    }


def neg_devops(ctx: Ctx) -> Conv:
    c = Conv(ctx, "devops")
    x = lookalikes(ctx)
    c.system(
        ctx.pick(
            [
                "You are a DevOps assistant.",
                "You help with CI/CD and Kubernetes.",
                "SRE helper. Be precise.",
                "Platform engineering assistant.",
            ]
        )
    )
    c.tools = [
        tool(
            "run_shell",
            "Run a read-only shell command on the bastion.",
            {"cmd": prop("string", "Command")},
            ["cmd"],
        )
    ]
    c.user(
        F(
            ctx.pick(
                [
                    '{product} {build} fails since upgrading to {ver}. Log line: `[{logts}] "GET /healthz" '
                    "{status}`. Any idea?",
                    "our VPC is {cidr}, pods can't reach the DB on port {port}. Config:\n```yaml\ndb:\n  host: "
                    "postgres.default.svc\n  password: ${{DB_PASSWORD}}\n  port: {port}\n```",
                    "Windows build agent is on {dotted} and the docker daemon binds 0.0.0.0:{port}. Safe?",
                    "Can you explain {cve}? Our image digest is sha256:{sha256}.",
                ]
            ),
            **x,
        )
    )
    c.call(
        "run_shell",
        {
            "cmd": ctx.pick(
                [
                    "kubectl get pods -n prod -o wide",
                    "docker info --format '{.ServerVersion}'",
                    "ss -tlnp | grep " + x["port"],
                    "journalctl -u kubelet --since '10 min ago'",
                ]
            )
        },
        F(
            "NAME                      READY   STATUS    RESTARTS   AGE\napi-{short}-x2k9p   1/1"
            "     Running   0          3d\nworker-{short}-7hj2q 0/1     CrashLoopBackOff   14  "
            "      2h\nlistening on 127.0.0.1:{port} and 0.0.0.0:{port}\nlast event {ts} "
            "(epoch {epoch})",
            **x,
        ),
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "The worker is crash-looping. Bind to 127.0.0.1 instead of 0.0.0.0 unless you need "
                    "external access, and keep the password in a Secret referenced as ${{DB_PASSWORD}}.",
                    "Version {ver} changed the default health check path; status {status} means the probe "
                    "is failing. Roll back to the previous tag or update the probe.",
                    "{cve} affects the xz/liblzma package; rebuild on a patched base image and compare the "
                    "new digest.",
                    "Your CIDR {cidr} overlaps the service range; pick a non-overlapping block.",
                ]
            ),
            **x,
        )
    )
    c.user(
        ctx.pick(
            ["thanks, that fixed it", "ok will try", "makes sense, ty", "great, rolling back now"]
        )
    )
    return c


def neg_code(ctx: Ctx) -> Conv:
    c = Conv(ctx, "code_review")
    x = lookalikes(ctx)
    c.system(
        ctx.pick(
            [
                "You are a code reviewer.",
                "You review pull requests for correctness.",
                "Senior engineer assistant for code reviews.",
                "Review diffs tersely.",
            ]
        )
    )
    c.user(
        F(
            ctx.pick(
                [
                    "Review commit {short} ({sha}) please:\n```diff\n-RETRY_LIMIT = 3\n+RETRY_LIMIT = 5\n"
                    "-API_KEY = os.environ['API_KEY']\n+API_KEY = os.environ.get('API_KEY', '')\n```",
                    "Is this migration safe? It adds a uuid default like {uuid} and backfills by "
                    "created_at < '{ts}'.",
                    "why does `requests` return {status} here? version {ver}, retry on 429 with backoff",
                    "Bump {product} from {ver} to {dotted}? Changelog mentions {cve}.",
                ]
            ),
            **x,
        )
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "Defaulting the key to an empty string hides misconfiguration; fail fast instead. The "
                    "retry bump is fine.",
                    "Backfilling in one transaction will lock the table; batch by primary key ranges.",
                    "A {status} with that client usually means the server rejected the payload; log the "
                    "response body.",
                    "Yes, upgrade: {cve} is fixed in {ver} and later.",
                ]
            ),
            **x,
        )
    )
    c.user(ctx.pick(["ok pushing a fix", "thanks!", "good catch", "what about tests?"]))
    c.assistant(
        ctx.pick(
            [
                "Add a regression test that runs with the env var unset.",
                "Looks good after the fix.",
                "Ship it.",
                "Add a test for the boundary condition.",
            ]
        )
    )
    return c


def neg_data(ctx: Ctx) -> Conv:
    c = Conv(ctx, "data_engineering")
    x = lookalikes(ctx)
    c.system(
        ctx.pick(
            [
                "You help with SQL and data pipelines.",
                "Data engineering assistant.",
                "Analytics copilot with a query tool.",
                "You write efficient SQL.",
            ]
        )
    )
    c.tools = [
        tool(
            "run_sql",
            "Run a read-only SQL query on the warehouse.",
            {"sql": prop("string", "SQL")},
            ["sql"],
        )
    ]
    c.user(
        F(
            ctx.pick(
                [
                    "How many orders like {order} shipped with tracking {track} late last week?",
                    "Kafka consumer lag spiked at {ts} (epoch {epoch}). Partition keys look like {uuid}.",
                    "dedupe events by event_id ({uuid}) keeping the latest ingested_at",
                    "count SKUs like {sku} per warehouse in {city}",
                ]
            ),
            **x,
        )
    )
    c.call(
        "run_sql",
        {
            "sql": ctx.pick(
                [
                    "SELECT count(*) FROM orders WHERE shipped_at > now() - interval '7 days' AND late",
                    "SELECT event_id, max(ingested_at) FROM events GROUP BY 1 LIMIT 10",
                    "SELECT sku, warehouse, count(*) FROM stock GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5",
                    "SELECT partition, max(lag) FROM consumer_lag GROUP BY 1",
                ]
            )
        },
        jtext(
            {
                "rows": [[x["sku"], x["city"], 42], [x["order"], x["status"], 7]],
                "elapsed_ms": int(x["port"]),
                "query_id": x["uuid"],
            }
        ),
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "The query returned 2 rows in {port} ms. {sku} is the top item in {city}.",
                    "Use ROW_NUMBER() over (PARTITION BY event_id ORDER BY ingested_at DESC) and keep rn = 1.",
                    "Lag started around {ts}; check the consumer group rebalance logs then.",
                    "Order {order} is among the late ones; its carrier scan is missing.",
                ]
            ),
            **x,
        )
    )
    return c


def neg_product(ctx: Ctx) -> Conv:
    c = Conv(ctx, "product")
    x = lookalikes(ctx)
    c.system(
        ctx.pick(
            [
                "You answer product questions for a smart-home store.",
                "Shopping assistant. No account access.",
                "Retail help bot for gadgets and books.",
                "You compare products.",
            ]
        )
    )
    c.user(
        F(
            ctx.pick(
                [
                    "Does the speaker work with both {product} and Siri? SKU {sku}.",
                    "Is ISBN {isbn} the 2nd edition? I want the one with the Python chapter.",
                    "my order {order} shows tracking {track}, where is it usually scanned?",
                    "What's the difference between firmware {ver} and {dotted} on the router?",
                ]
            ),
            **x,
        )
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "Yes, {sku} supports {product}, Google Home and Siri via the companion app.",
                    "ISBN {isbn} is the second edition, published 2019.",
                    "Tracking numbers like that are usually scanned at the regional hub first; orders "
                    "typically arrive in 3–5 days.",
                    "Firmware {ver} adds WPA3; the {dotted} build is an older beta.",
                ]
            ),
            **x,
        )
    )
    c.user(ctx.pick(["cool thanks", "and the price?", "is there a black version?", "ok perfect"]))
    c.assistant(
        F(
            ctx.pick(
                [
                    "It's {amount} USD this week.",
                    "Yes, the BLK variant.",
                    "Happy to help!",
                    "The black one is in stock.",
                ]
            ),
            **x,
        )
    )
    return c


def neg_travel(ctx: Ctx) -> Conv:
    c = Conv(ctx, "travel")
    x = lookalikes(ctx)
    c.system(
        ctx.pick(
            [
                "You are a travel guide assistant.",
                "You suggest itineraries.",
                "Sightseeing helper.",
                "Trip planning assistant.",
            ]
        )
    )
    c.tools = [
        tool(
            "search_places",
            "Search public places and attractions.",
            {"city": prop("string", "City"), "category": prop("string", "Category")},
            ["city"],
        )
    ]
    c.user(
        F(
            ctx.pick(
                [
                    "3 days in {city} in October, what should I see?",
                    "Is it easy to get from the airport to the old town in {city}?",
                    "best museums in {city} for kids?",
                    "going to {city} and then Petra in Jordan, how many days?",
                ]
            ),
            **x,
        )
    )
    c.call(
        "search_places",
        {"city": x["city"], "category": ctx.any(["museum", "park", "landmark"])},
        jtext(
            {
                "results": [
                    {"name": "Old Town Square", "rating": 4.7, "opens": "09:00"},
                    {"name": "City Botanical Garden", "rating": 4.5, "opens": "08:30"},
                ]
            }
        ),
    )
    c.assistant(
        F(
            ctx.pick(
                [
                    "Day 1: Old Town Square and the river walk. Day 2: the botanical garden. Day 3: a "
                    "day trip outside {city}.",
                    "From the airport take the express train (about 25 minutes).",
                    "The science museum and the botanical garden are great for kids.",
                    "Plan two days for {city} and two for Petra; Jordan's sites are spread out.",
                ]
            ),
            **x,
        )
    )
    return c


def neg_recipe(ctx: Ctx) -> Conv:
    c = Conv(ctx, "recipes")
    c.system(
        ctx.pick(
            [
                "You are a cooking assistant.",
                "Recipe helper.",
                "You adapt recipes to dietary needs.",
                "Home cooking coach.",
            ]
        )
    )
    c.user(
        ctx.pick(
            [
                "How do I scale a 4-serving lasagna to 10? Oven is 180°C / 356°F.",
                "vegan substitute for eggs in brownies? recipe says 2 eggs, 1.5 cups sugar",
                "Bread recipe: 500 g flour, 350 g water, 10 g salt, 7 g yeast. Why is it dense?",
                "what can I make with chickpeas, spinach and 1 can of coconut milk (400 ml)?",
            ]
        )
    )
    c.assistant(
        ctx.pick(
            [
                "Multiply each ingredient by 2.5 and use a larger pan; bake 10–15 minutes longer.",
                "Use 2 tbsp ground flax + 5 tbsp water per egg, or 1/4 cup applesauce.",
                "Probably under-proofed; let it rise until doubled (1–2 h at 24°C).",
                "A chickpea and spinach curry: 20 minutes, serves 3.",
            ]
        )
    )
    c.user(
        ctx.pick(
            ["thanks!", "and for gluten free?", "how long in the fridge?", "nice, what spices?"]
        )
    )
    c.assistant(
        ctx.pick(
            [
                "Enjoy!",
                "Use a 1:1 gluten-free blend with xanthan gum.",
                "Up to 3 days, covered.",
                "Cumin, coriander, turmeric and garam masala.",
            ]
        )
    )
    return c


NEGATIVE = [neg_devops, neg_code, neg_data, neg_product, neg_travel, neg_recipe]


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------


def build_one(
    ctx: Ctx, make: Callable[[Ctx], Conv], negative: bool
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    for _attempt in range(200):
        conv = make(ctx)
        spans: list[dict[str, Any]] = []
        body = finalize(conv.body(), [], spans)
        validate_body(body)
        if negative and spans:
            raise AssertionError(f"negative scenario {make.__name__} produced spans")
        bad = problems(body, spans, negative)
        if not bad:
            return body, spans, conv.domain
        if negative:
            raise AssertionError(f"{make.__name__}: {bad[:3]}")
        REJECTS.update(b.split(" ", 2)[0] + " " + b.split(" ", 2)[-1][:40] for b in bad[:1])
    raise AssertionError(f"{make.__name__}: could not build a clean conversation")


def build_split(split: str) -> list[dict[str, Any]]:
    ctx = Ctx(split, SPLITS[split])
    plan = [(POSITIVE[i % len(POSITIVE)], False) for i in range(N_POSITIVE)]
    plan += [(NEGATIVE[i % len(NEGATIVE)], True) for i in range(N_NEGATIVE)]
    ctx.rng.shuffle(plan)
    records = []
    for i, (make, negative) in enumerate(plan):
        body, spans, domain = build_one(ctx, make, negative)
        out_spans = []
        for sp in spans:
            value = at_path(body, sp["path"])[sp["start"] : sp["end"]]
            assert value == sp["value"], (value, sp)
            out_spans.append({**sp, "field": field_of(body, sp["path"])})
        records.append(
            {
                "id": f"{split}-{i:04d}",
                "split": split,
                "negative": negative,
                "domain": domain,
                "body": body,
                "spans": out_spans,
            }
        )
    return records


def render(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def check_record(rec: dict[str, Any]) -> None:
    body = rec["body"]
    validate_body(body)
    for sp in rec["spans"]:
        assert sp["label"] in LABELS and sp["field"] in FIELDS
        assert at_path(body, sp["path"])[sp["start"] : sp["end"]] == sp["value"]
        assert sp["field"] == field_of(body, sp["path"])
    assert rec["negative"] == (not rec["spans"])


def stats(all_records: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for split, recs in all_records.items():
        pos = sum(not r["negative"] for r in recs)
        lines.append(
            f"\n== {split}: {len(recs)} conversations ({pos} positive, "
            f"{len(recs) - pos} negative), "
            f"{sum(len(r['spans']) for r in recs)} spans"
        )
        table: Counter[tuple[str, str]] = Counter()
        for r in recs:
            for sp in r["spans"]:
                table[(sp["label"], sp["field"])] += 1
        head = f"{'label':<24}" + "".join(f"{f:>17}" for f in FIELDS) + f"{'total':>8}"
        lines.append(head)
        for lab in LABELS:
            row = [table[(lab, f)] for f in FIELDS]
            lines.append(f"{lab:<24}" + "".join(f"{n:>17}" for n in row) + f"{sum(row):>8}")
        doms = Counter(r["domain"] for r in recs)
        lines.append("domains: " + ", ".join(f"{d}={n}" for d, n in sorted(doms.items())))
        sizes = [len(json.dumps(r["body"], ensure_ascii=False)) for r in recs]
        nmsg = [len(r["body"]["messages"]) for r in recs]
        lines.append(
            f"body chars: min {min(sizes)}, median {sorted(sizes)[len(sizes) // 2]}, "
            f"max {max(sizes)}; messages: {min(nmsg)}-{max(nmsg)}; with tools: "
            f"{sum('tools' in r['body'] for r in recs)}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_DIR, help="output directory")
    ap.add_argument("--check", action="store_true", help="compare with the files on disk")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    all_records = {split: build_split(split) for split in SPLITS}
    for recs in all_records.values():
        for r in recs:
            check_record(r)
    status = 0
    for split, recs in all_records.items():
        path = args.out / f"pii-conversations-{split}.jsonl"
        text = render(recs)
        if args.check:
            same = path.exists() and path.read_text(encoding="utf-8") == text
            print(f"{path}: {'up to date' if same else 'DIFFERS'}")
            status |= 0 if same else 1
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(text.encode())} bytes, {len(recs)} lines)")
    if not args.quiet:
        print(stats(all_records))
        if REJECTS:
            print(
                "\nregenerated drafts (reason: count):",
                ", ".join(f"{k}: {v}" for k, v in REJECTS.most_common(8)),
            )
    return status


if __name__ == "__main__":
    sys.exit(main())

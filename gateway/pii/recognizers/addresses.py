"""Street addresses in the shapes of the countries our users write from.

Each shape finds the street part (number and street name, in that country's order); the
postcode, city and unit that follow are then taken in too, so an address is masked whole and
no fragment of it (a postcode next to a city) reaches the upstream.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.pii.entities import STREET_ADDRESS
from gateway.pii.findings import Finding

_L = r"A-Za-zÀ-ÖØ-öø-ÿĀ-ſ"  # Latin letters with accents
_WORD = rf"[{_L}0-9][{_L}0-9'’.\-]*"
_CAP = rf"[A-ZÀ-ÖØ-ÞĀ-Ž][{_L}'’.\-]*"
_NUM = (
    r"\d{1,5}(?:\s?[A-Za-z](?![\w])|[-/][A-Za-z0-9]{1,3}(?![\w])|[A-Za-z]?(?:\s?-\s?\d{1,5}[A-Za-z]?)?)"
    r"(?:\s(?:bis|ter|quater)\b)?"
)
_EN_SUFFIX = (  # USPS street suffixes and their abbreviations, plus Indian road words
    r"(?:street|streets|st|avenue|ave|av|road|roads|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|"
    r"way|ways|place|pl|square|squares|sq|terrace|ter|terr|parkway|pkwy|highway|hwy|circle|cir|"
    r"trail|trl|crescent|cres|close|gardens|garden|gdns|grove|gr|mews|row|walk|alley|aly|loop|"
    r"plaza|plz|ridge|ridges|heights|hts|view|views|hill|hills|park|parks|green|glen|glens|vale|"
    r"rise|wharf|quay|parade|pde|esplanade|broadway|causeway|expressway|expy|freeway|fwy|"
    r"turnpike|tpke|pike|run|pass|path|point|points|pt|crossing|xing|commons|common|center|"
    r"centers|ctr|estate|estates|cove|coves|creek|landing|manor|manors|meadow|meadows|mill|"
    r"mills|orchard|passage|port|ports|shore|shores|spring|springs|station|sta|track|valley|"
    r"valleys|village|villages|vista|vistas|wood|woods|yard|cross|main|marg|nagar|curve|club|"
    r"lodge|rest|fork|forks|cliff|cliffs|stravenue|forge|forges|key|keys|mountain|mountains|"
    r"mount|flat|flats|bypass|camp|canyon|cape|corner|corners|course|crest|dale|dam|divide|"
    r"ferry|field|fields|ford|fords|fort|freeway|gateway|harbor|harbors|haven|hollow|inlet|"
    r"island|islands|isle|junction|junctions|knoll|knolls|lake|lakes|light|lights|loaf|lock|"
    r"locks|mall|motorway|neck|oval|overpass|pine|pines|plain|plains|prairie|radial|ramp|"
    r"ranch|rapid|rapids|route|shoal|shoals|skyway|spur|spurs|stream|summit|throughway|trace|"
    r"trafficway|tunnel|underpass|union|unions|ville|well|wells|extension|extensions|falls|"
    r"burg|burgs|brook|brooks|bluff|bluffs|branch|bridge|bottom|bend|beach|arcade|anex|"
    r"harbour|drove|chase|hey|gate|wynd|rise)"
)
_DIRECTION = r"(?:n|s|e|w|ne|nw|se|sw|north|south|east|west)\.?"
_NOT_A_STREET_WORD = re.compile(
    r"(?i)^(?:minutes?|mins?|miles?|hours?|hrs?|km|kms|kilomet(?:er|re)s?|met(?:er|re)s?|"
    r"blocks?|steps?|days?|weeks?|months?|years?|times?|seconds?|secs?|feet|ft|yards?|lanes?|"
    r"hard|disk|usb|test|new|more|other|few|many|the|a|an|of|and|or|to|in|on|at|by|from|"
    r"for|with|is|are|was|were|be|it|this|that|these|those|my|your|our|their|his|her|its|"
    r"we|you|they|i|he|she|per|x|times|replicas?|nodes?|pods?|servers?|users?|items?|"
    r"requests?|errors?|points?|percent|gb|mb|kb|tb|cores?|threads?|ms|s|am|pm)$"
)
_UNIT = (
    r"(?i:,?\s*(?:apartamento|apartment|apto|appt|apt|suite|ste|unit|flat|floor|fl|room|rm|building|bldg|"
    r"piso|planta|puerta|andar|sala|scala|interno|int|etage|étage|"
    r"bâtiment|bat|stock|whg|wohnung|conj|cj|bloco|bl|lote|casa|og|eg|dg)\.?\s*(?:no\.?\s*)?#?\s*[\w\-/]{1,6}|"
    r",?\s*#\s?\d{1,5}[A-Za-z]?|,?\s*\d{1,2}\.\s?(?:og|etage|stock|obergeschoss)\b(?:\s(?:links|rechts|mitte))?|"
    r",?\s*\d{1,2}\s?[º°ª](?:\s?[A-Z]\b|\s?(?:piso|planta|andar|izq(?:uierda)?|dcha|derecha))?)"
)
_EN_STREET = re.compile(
    rf"(?i)(?<![\w\-/.])(?:(?:flat|apt|apartment|unit|suite|studio)\.?\s*\w{{1,5}},?\s+)?{_NUM}\s+"
    rf"(?:{_DIRECTION}\s+)?(?:{_WORD}\s+){{1,4}}{_EN_SUFFIX}\b\.?(?:\s+{_DIRECTION}(?![\w]))?"
)
_UK_UNIT_STREET = re.compile(
    rf"(?i)(?<![\w])(?:flat|apartment|studio|unit)\s*\w{{1,5}}\s*[,\n]\s*(?:{_WORD}\s+){{1,3}}{_EN_SUFFIX}\b\.?"
)
_DE_NL_COMPOUND = (
    r"(?:straße|strasse|str\.|gasse|weg|allee|platz|damm|ufer|chaussee|straat|gracht|laan|"
    r"plein|kade|singel|dijk|steeg|dreef)"
)
_DE_NL_WORD = (
    r"(?:Straße|Strasse|Str\.|Gasse|Weg|Allee|Platz|Ring|Damm|Ufer|Chaussee|Steig|Pfad|Markt|"
    r"Graben|Kai|Berg|Hof|Tor|Brücke|Zeile|Straat|Gracht|Laan|Plein|Kade|Singel|Dijk|Steeg|"
    r"Pad|Markt|Wal|Dreef|Park|Baan)"
)
_DE_PREPOSITION = (
    r"(?:Am|An der|An den|Auf der|Auf dem|Im|In der|In den|Zum|Zur|Unter den|Hinter der|"
    r"Op de|Aan de|In de)"
)
_DE_NL_STREET = re.compile(
    rf"(?<![\w\-])(?:{_DE_PREPOSITION}\s+)?"
    rf"(?:{_CAP}(?:[\s\-]{_CAP}){{0,2}}[\s\-]{_DE_NL_WORD}|"
    rf"(?:{_CAP}\s){{0,2}}[A-ZÄÖÜ][{_L}\-]*?(?i:{_DE_NL_COMPOUND}))\s*{_NUM}(?![\w])"
)
_DE_PREPOSITION_STREET = re.compile(
    rf"(?<![\w\-])(?:Am|An der|Auf der|Im|Zum|Zur|Unter den)\s+{_CAP}(?:\s{_CAP})?"
    r"\s+\d{1,4}[a-z]?(?![\w])"
)
_FR_TYPES = (
    r"(?:rue|avenue|av\.?|boulevard|bd|bld|place|pl\.|allée|allee|impasse|imp\.|chemin|ch\.|"
    r"quai|route|rte|cours|square|passage|voie|rond-point|faubourg|fbg|sentier|villa|cité|"
    r"hameau|lieu-dit|promenade|esplanade|parvis|montée|traverse|résidence)"
)
_PARTICLE = (
    r"(?:(?:de la|de l['’]|de|du|des|d['’]|la|le|les|l['’]|del|de los|de las|dos|das|da|do|"
    r"di|della|dei|degli|delle|dello)\s*)"
)
_FR_STREET = re.compile(
    rf"(?i)(?<![\w\-])(?:(?:bât(?:iment)?|bat|escalier|esc|résidence|appartement|appt|apt)\.?\s*\w{{1,5}},?\s+)?\d{{1,5}}(?:\s?(?:bis|ter|quater|[a-d])\b)?,?\s+{_FR_TYPES}\s+{_PARTICLE}?"
    rf"{_WORD}(?:[\s\-]+(?:{_PARTICLE})?{_WORD}){{0,4}}"
)
_LATIN_TYPES = (
    r"(?:calle|c/|avenida|avda\.?|av\.|paseo|pº|plaza|pza\.?|camino|carretera|ctra\.?|ronda|"
    r"travesía|glorieta|rambla|rua|r\.|travessa|praça|alameda|estrada|largo|(?-i:[Vv]ia(?=\s+(?:[A-Z][a-z]|(?:dei|del|della|delle|degli|di|da|de)\s)))|viale|v\.le|"
    r"piazza|p\.za|piazzale|corso|c\.so|vicolo|strada|lungomare|contrada|borgo)"
)
_LATIN_STREET = re.compile(
    rf"(?i)(?<![\w\-]){_LATIN_TYPES}\s+{_PARTICLE}?{_WORD}(?:\s+(?:{_PARTICLE})?{_WORD}){{0,4}}?"
    rf",?\s*(?:n[º°o]\.?\s*|nr\.?\s*)?\d{{1,5}}(?:[-/][A-Za-z0-9]{{1,3}}|[A-Za-z])?(?![\w])"
    r"(?!\s+(?:days?|hours?|minutes?|weeks?|months?|years?|times?|items?|units?|km|miles?|%))"
)
_SEGMENT = r"(?:[A-Z0-9#][\w.'’\-/]*(?:\s(?:[A-Z0-9#(][\w.'’\-/)]*|of|de|la|du))*)"
_INDIAN = re.compile(
    r"(?<![\w])(?i:(?:house|h\.)\s?no\.?|flat(?:\s?no\.?)?|plot(?:\s?no\.?)?|door\s?no\.?|"
    rf"d\.\s?no\.?|shop\s?no\.?|#)\s*[\w/\-]{{1,10}}(?:,\s*{_SEGMENT}){{1,7}}"
    r"(?:\s*[-–,]?\s*\d{6}\b)?"
)
_INDIAN_ROAD = re.compile(
    r"(?<![\w])(?i:road|street|lane|sector|block|phase|stage)\s?(?i:no\.?\s?)?\d{1,4}[A-Za-z]?"
    rf"(?:,\s*{_SEGMENT}){{0,5}}(?:\s*[-–,]?\s*\d{{6}}\b)?"
)
_ORDINAL_CROSS = re.compile(
    r"(?i)(?<![\w/])(?:\d{1,4}(?:/\d{1,4})?[A-Z]?,\s*)?\b\d{1,2}(?:st|nd|rd|th)\s+"
    r"(?:cross|main|stage|phase|block)(?:\s+road)?\b"
)
_PO_BOX = re.compile(
    r"(?i)\b(?:p\.?\s?o\.?\s?box|post\s+office\s+box|postfach|boîte postale|bp)\s*\d{1,6}\b"
)
_US_NO_SUFFIX = re.compile(
    rf"(?<![\w\-/.]){_NUM}\s+(?:{_CAP}\s+){{0,3}}{_CAP},\s*{_CAP}(?:\s{_CAP}){{0,2}},?\s+[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?\b"
)
_POSTCODE = (
    r"(?:\d{5}(?:-\d{4})?|\d{4}\s?[A-Z]{2}|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d|"
    r"\d{3}\s?\d{2}|\d{6}|\d{4}|\d{2}-\d{3}|\d{5}-\d{3})"
)
_PLACE = rf"{_CAP}(?:[\s\-](?:{_CAP}|de|del|di|am|an|der|sur|upon|on|le|la|los|las|do|da|dos|das))*"
# What may follow a street: units, then up to three ", city / postcode / state" segments.
_TAIL = re.compile(
    rf"(?:{_UNIT}|(?:(?:,|\s[-–])?\s*(?:{_POSTCODE}\s+{_PLACE}(?:\s+cedex(?:\s\d{{1,2}})?)?|"
    rf"{_PLACE}(?:,?\s+(?:[A-Z]{{2}}\s+)?{_POSTCODE})?|[A-Z]{{2}}\s+{_POSTCODE}|{_POSTCODE})(?![\w])"
    r"(?:\s[-–]\s[A-Z]{2}(?![\w]))?)){0,5}"
)


class AddressRecognizer:
    entity_types = frozenset({STREET_ADDRESS})
    _shapes = (
        _EN_STREET,
        _UK_UNIT_STREET,
        _DE_NL_STREET,
        _DE_PREPOSITION_STREET,
        _FR_STREET,
        _LATIN_STREET,
        _INDIAN,
        _INDIAN_ROAD,
        _ORDINAL_CROSS,
        _PO_BOX,
        _US_NO_SUFFIX,
    )

    def find(self, text: str) -> Iterator[Finding]:
        if not any(c.isdigit() for c in text):
            return  # every shape has a house, plot, road or box number
        for shape in self._shapes:
            for match in shape.finditer(text):
                if shape is _EN_STREET and not self._real_street(match.group(0)):
                    continue
                end = match.end()
                tail = _TAIL.match(text, end)
                if tail and text[end : tail.end()].strip(" ,"):
                    end = tail.end()
                yield Finding(match.start(), end, STREET_ADDRESS, 0.8)

    @staticmethod
    def _real_street(street: str) -> bool:
        words = street.split()
        number = next(i for i, w in enumerate(words) if w[0].isdigit())
        # "10 minute walk", "8080 on the main road": a count or a sentence, not a street name.
        return not any(_NOT_A_STREET_WORD.match(w.strip(",.")) for w in words[number + 1 : -1])

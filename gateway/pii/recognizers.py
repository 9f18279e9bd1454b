"""What stock Presidio misses, as Presidio ``PatternRecognizer``s.

Credentials (cloud and SaaS keys, private key blocks, bearer and JWT tokens), phone numbers
in US and international formats without a validity check (fictional 555 and unassigned
ranges are still someone's number, or look enough like one to leak), SSNs by shape alone,
US and UK postal addresses, and dates of birth in the formats people write. Presidio's own
recognizers for cards (Luhn), IBANs (checksum), e-mail and IP addresses run beside these.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern, PatternRecognizer

# Street suffixes people and address generators use; a street needs one unless the address
# continues with a city, a state and a ZIP code, which identifies it on its own.
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
    r"Square|Sq|Terrace|Ter|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Trail|Trl|Path|Crescent|Close|"
    r"Gardens|Grove|Hill|Hills|Mews|Row|Walk|Alley|Loop|Run|Pike|Station|Crossing|Plaza|"
    r"Ridge|Heights|Park|View|Village|Forges?|Stravenue|Curve|Fort|Mission|Summit|Spur|Bypass|"
    r"Meadows?|Port|Shoals?|Springs?|Valley|Via|Wells?|Manor|Mall|Green|Glen|Falls|Estates?|"
    r"Extension|Field|Flats?|Ford|Harbor|Haven|Island|Junction|Key|Knolls?|Lake|Landing|Light|"
    r"Lock|Mill|Mount|Neck|Orchard|Oval|Pass|Pines|Plains?|Point|Prairie|Radial|Ramp|Ranch|"
    r"Rapids?|Rest|Route|Shore|Skyway|Squares?|Stream|Track|Trafficway|Tunnel|Turnpike|Union|"
    r"Vista|Brooks?|Burgs?|Bypass|Camp|Canyon|Cape|Causeway|Centers?|Cliffs?|Club|Common|"
    r"Corners?|Course|Cove|Creek|Crest|Dale|Dam|Divide|Expressway|Ferry|Fork|Freeway|Garden|"
    r"Gateway|Harbors?|Hollow|Inlet|Isle|Keys|Lakes|Lights|Loaf|Locks|Lodge|Motorway|Mountains?|"
    r"Overpass|Parks|Points|Ports|Ridges|Roads|Shoal|Streets|Throughway|Underpass|Unions|Ville|"
    r"Vistas?|Ways|Well)\.?"
)
_CAP_WORD = r"[A-Z][a-zA-Z'\-]+"
_UNIT = r"(?:,?\s+(?:Apt\.?|Suite|Unit|Flat|#)\s*\w+)?"
_US_CITY_STATE_ZIP = (
    rf",?\s+{_CAP_WORD}(?:\s{_CAP_WORD}){{0,3}},?\s+[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?"
)
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)


def _recognizer(
    entity: str, name: str, patterns: list[tuple[str, str, float]], context: list[str] | None = None
) -> PatternRecognizer:
    return PatternRecognizer(
        supported_entity=entity,
        name=name,
        patterns=[Pattern(n, regex, score) for n, regex, score in patterns],
        context=context or [],
        # Presidio's default flags include IGNORECASE, which would turn "a capitalised word"
        # into "any word"; patterns that want case-insensitivity say so with (?i).
        global_regex_flags=re.MULTILINE,
    )


def credential_recognizers() -> list[PatternRecognizer]:
    return [
        _recognizer(
            "CREDENTIAL",
            "CloudCredentialRecognizer",
            [
                (
                    "aws_access_key",
                    r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
                    0.9,
                ),
                ("aws_secret_key", r"(?i)(?<=aws)[\w\s\"':=]{0,30}?\b([A-Za-z0-9/+]{40})\b", 0.8),
                (
                    "github_token",
                    r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
                    0.95,
                ),
                ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,250}\b", 0.95),
                ("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}", 0.95),
                ("openai_key", r"\bsk-(?:proj-|svcacct-|ant-)?[A-Za-z0-9_-]{20,}\b", 0.85),
                ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", 0.9),
                ("stripe_key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b", 0.9),
                (
                    "private_key_block",
                    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?"
                    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
                    0.99,
                ),
                ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b", 0.95),
                ("bearer_token", r"(?i)(?<=bearer )[A-Za-z0-9._~+/=-]{16,}", 0.85),
                ("basic_auth_url", r"(?<=://)[^\s:/@]+:[^\s:/@]+(?=@)", 0.8),
            ],
        ),
    ]


def phone_recognizers() -> list[PatternRecognizer]:
    sep = r"[ .\-]?"
    return [
        _recognizer(
            "PHONE_NUMBER",
            "PermissivePhoneRecognizer",
            [
                # US/NANP, including the fictional 555 range: (808) 908-9854, 808-658-0648, +1 ...
                (
                    "nanp",
                    rf"(?<![\w+])(?:\+?1{sep})?(?:\(\d{{3}}\)\s?|\d{{3}}{sep})\d{{3}}{sep}\d{{4}}\b",
                    0.7,
                ),
                # International: +44118 4960342, +33 1 23 45 67 89, +49-30-1234567
                ("international", r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){2,5}\b", 0.7),
                # Area code in parentheses: (03738) 85013, (0118)4960169, (020) 7946 0958
                ("area_in_parens", r"(?<![\w+])\(0\d{2,5}\)\s?\d{3,8}(?:[ \-]\d{2,6})?\b", 0.6),
                # National trunk-prefixed numbers: 04858 186940, 020 7946 0958, 030 1234567
                ("trunk", r"(?<![\w+])0\d{2,4}[ \-]?\d{3,4}[ \-]?\d{3,4}\b", 0.5),
            ],
            context=["phone", "call", "tel", "mobile", "cell", "fax", "number"],
        ),
    ]


def ssn_recognizers() -> list[PatternRecognizer]:
    # By shape only: Presidio's validator drops "invalid" areas, but those are still SSN-like.
    return [
        _recognizer(
            "US_SSN",
            "SsnShapeRecognizer",
            [
                ("ssn", r"(?<![\d\-])\d{3}([ \-])\d{2}\1\d{4}(?![\d\-])", 0.6),
                ("ssn_labelled", r"(?i)(?<=ssn)[\s:#is]{0,6}\d{9}\b", 0.7),
            ],
        ),
    ]


def address_recognizers() -> list[PatternRecognizer]:
    street = rf"\b\d{{1,6}}[A-Za-z]?\s+(?:{_CAP_WORD}\s){{1,4}}"
    return [
        _recognizer(
            "ADDRESS",
            "PostalAddressRecognizer",
            [
                ("us_full", rf"{street}{_CAP_WORD}\.?{_UNIT}{_US_CITY_STATE_ZIP}", 0.85),
                (
                    "street",
                    rf"{street}{_STREET_SUFFIX}{_UNIT}(?:,\s+{_CAP_WORD}(?:\s{_CAP_WORD}){{0,3}})?(?:,?\s+{_UK_POSTCODE})?\b",
                    0.7,
                ),
                (
                    "uk_flat",
                    rf"\b(?:Flat|Apartment|Unit)\s+\d+\w?\s*\n?\s*(?:{_CAP_WORD}\s){{1,3}}{_CAP_WORD},\s+{_CAP_WORD}(?:\s{_CAP_WORD}){{0,2}}\s+{_UK_POSTCODE}\b",
                    0.85,
                ),
                ("uk_postcode", rf"\b{_UK_POSTCODE}\b", 0.4),
                ("us_zip_state", r"\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b", 0.3),
            ],
        ),
    ]


def date_recognizers() -> list[PatternRecognizer]:
    return [
        _recognizer(
            "DATE_TIME",
            "WrittenDateRecognizer",
            [
                (
                    "month_day_year",
                    rf"\b{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b",
                    0.7,
                ),
                (
                    "day_month_year",
                    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\.?,?\s+\d{{4}}\b",
                    0.7,
                ),
                ("numeric_mdy", r"\b\d{1,2}[/.\-]\d{1,2}[/.\-](?:19|20)\d{2}\b", 0.6),
                ("iso", r"\b(?:19|20)\d{2}-\d{2}-\d{2}\b", 0.6),
            ],
        ),
    ]


def email_recognizers() -> list[PatternRecognizer]:
    # No top-level-domain check (Presidio's needs tldextract's list): an address on an
    # internal or unknown domain identifies a person just as well.
    return [
        _recognizer(
            "EMAIL_ADDRESS",
            "PermissiveEmailRecognizer",
            [("email", r"(?<![\w.+%-])[\w.+%-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+", 0.9)],
        )
    ]


def custom_recognizers() -> list[PatternRecognizer]:
    return [
        *email_recognizers(),
        *credential_recognizers(),
        *phone_recognizers(),
        *ssn_recognizers(),
        *address_recognizers(),
        *date_recognizers(),
    ]

"""Detection, in-process: every format the issue lists is masked whole, look-alikes are not.

These are the floor, not the measure: `bench/pii_eval.py` runs the labelled conversations of
`bench/data/` through a real gateway and reports leak rates per type and field.
"""

from __future__ import annotations

import pytest

from gateway.pii.coreference import propagate
from gateway.pii.detector import PIIDetector
from gateway.pii.entities import (
    CREDENTIAL,
    DATE_OF_BIRTH,
    MEDICAL_RECORD_NUMBER,
    PASSPORT,
    PERSON,
    PHONE_NUMBER,
    STREET_ADDRESS,
    US_SSN,
)


@pytest.fixture(scope="module")
def detector() -> PIIDetector:
    return PIIDetector(use_ner=False, cache_size=0)


def masked_whole(detector: PIIDetector, text: str, value: str, field: str | None = None) -> bool:
    start = text.index(value)
    end = start + len(value)
    return any(f.start <= start and f.end >= end for f in detector.detect(text, field=field))


def untouched(detector: PIIDetector, text: str) -> bool:
    return detector.detect(text) == []


PHONES = [
    "(415) 555-0199", "415.555.0199", "+1 415 555 0199", "06 12 34 56 78", "+33 6 12 34 56 78",
    "06-12345678", "98765 43210", "+91 98765 43210", "030/1234567", "0171 2345678",
    "(11) 91234-5678", "0803 123 4567", "+234 803 123 4567", "612 34 56 78", "333 123 4567",
    "07700 900123", "020 7946 0958", "(020) 7946 0958", "+44 20 7946 0958",
    "+1 415 555 0199 ext. 12", "415-555-0199x123", "+1 (415) 555-0199;ext=12",
    "0171 7206046 (ext. 695)", "1 (491) 424-0126", "+49 (0)30 1234567", "06.12.34.56.78",
]  # fmt: skip


@pytest.mark.parametrize("phone", PHONES)
def test_national_phone_formats_and_extensions_are_masked_whole(
    detector: PIIDetector, phone: str
) -> None:
    assert masked_whole(detector, f"you can reach me at {phone} today", phone)


@pytest.mark.parametrize(
    "text",
    [
        "order 112-3456789-1234567 shipped", "at 2024-03-14T09:26:53Z the job failed",
        "Windows build 10.0.19045.3693", "bump to v2.14.1", "ISBN 978-3-16-148410-0",
        "epoch 1701388800", "tracking 1Z999AA10123456784", "USPS 9400 1000 0000 0000 0000 00",
        "routing number 021000021", "see ORD-2024-118833", "SKU-44821-BLK in stock",
        "invoice 4471-2231-90", "uuid 123e4567-e89b-12d3-a456-426614174000",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b", "fixed CVE-2024-3094 today",
        "listen on 0.0.0.0:8080 and 127.0.0.1", "VPC CIDR 10.0.0.0/16", "ticket #4821345678",
        "password: ${DB_PASSWORD}", "token_type: bearer", "max_tokens: 1000000",
        "api_key = os.environ['API_KEY']", "meeting on March 14, 2024 at 10:00",
    ],
)  # fmt: skip
def test_look_alikes_stay_untouched(detector: PIIDetector, text: str) -> None:
    assert untouched(detector, text), detector.detect(text)


@pytest.mark.parametrize(
    ("template", "value", "entity"),
    [
        ("yeah it's {} ok", "412859031", US_SSN),
        ("it's {}", "4 1 2, 8 5, 9 0 3 1", US_SSN),
        ("Her SSN is {}, ok", "8 5 7 - 2 6 - 9 4 9 8", US_SSN),
        ("passport number is {}", "X12345678", PASSPORT),
        ("Reisepassnummer: {}", "C01X00T47", PASSPORT),
        ("passport No {}", "NKBVLVWT4", PASSPORT),
        ("MRN#{} admitted", "4471209", MEDICAL_RECORD_NUMBER),
        ("Med Rec No. {}", "A2231987", MEDICAL_RECORD_NUMBER),
        ("NHS number {}", "943 476 5919", MEDICAL_RECORD_NUMBER),
        ("née le {} à Lyon", "14 mars 1987", DATE_OF_BIRTH),
        ("geboren am {}", "14. März 1987", DATE_OF_BIRTH),
        ("fecha de nacimiento: {}", "14 de marzo de 1987", DATE_OF_BIRTH),
        ("AWS_SECRET_ACCESS_KEY={}", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", CREDENTIAL),
        ("secret: {}", "/JalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE+", CREDENTIAL),
        ("redis://:{}@cache.internal:6379/0", "Sunflower940~", CREDENTIAL),
        ("admin pw was {}", "E8lq4x2O7nEJ5&3M7", CREDENTIAL),
        ("{}", "Lindenstraße 42b, 10969 Berlin", STREET_ADDRESS),
        ("{}", "12 bis rue des Lilas, 69003 Lyon", STREET_ADDRESS),
        ("{}", "House No. 14, 3rd Cross, 5th Main, Indiranagar, Bengaluru 560038", STREET_ADDRESS),
        ("I live at {}", "742 evergreen terrace", STREET_ADDRESS),
        ("{}", "Calle de Alcalá 45, 3º B, 28014 Madrid", STREET_ADDRESS),
        ("{}", "Flat 3, 27 Kingsley Road, Leeds LS6 2AB", STREET_ADDRESS),
        ("card {} on file", "2223 0031 2200 3222", "CREDIT_CARD"),
    ],
)
def test_structured_values_are_masked_whole(
    detector: PIIDetector, template: str, value: str, entity: str
) -> None:
    text = template.format(value)
    start = text.index(value)
    found = [f for f in detector.detect(text) if f.start <= start and f.end >= start + len(value)]
    assert found and found[0].entity_type == entity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("tell sarah i'm late", "sarah"),
        ("ask Okonkwo about it", "Okonkwo"),
        ("that's K-O-W-A-L-S-K-I", "K-O-W-A-L-S-K-I"),
        ("spelled N A K A M U R A", "N A K A M U R A"),
        ("ping priya_raman on slack", "priya_raman"),
        ("Customer 王秀英 called twice", "王秀英"),
        ("Good afternoon. 高橋 大輔 here.", "高橋 大輔"),
        ("김민준씨가 왔어요", "김민준"),
        ("Contact Ирина Петрова today", "Ирина Петрова"),
        ("Γιώργος Παπαδόπουλος signed", "Γιώργος Παπαδόπουλος"),
        ("the holder is محمد العلي now", "محمد العلي"),
        ("Nguyễn Văn An booked", "Nguyễn Văn An"),
        ("Aruzhan Seitkali here", "Aruzhan Seitkali"),
        ("New message from Matteo Fontana today", "Matteo Fontana"),
        ("ok so dinara and hamza are coming over", "dinara"),
        ("Dear Ms Okonkwo-Baptiste,", "Okonkwo-Baptiste"),
    ],
)
def test_names_in_every_writing_style_are_masked(
    detector: PIIDetector, text: str, value: str
) -> None:
    assert masked_whole(detector, text, value)


@pytest.mark.parametrize(
    "text",
    [
        "Ask Alexa to play music", "Claude said the answer is 42",
        "deploy Jenkins and Grafana to Berlin", "the Paris office", "fly from Paris to Sydney",
        "We use Django with Celery", "Hey Siri, set a timer", "New York City",
        "Apache Kafka Streams", "Ruby on Rails and Julia", "May 2024 release",
    ],
)  # fmt: skip
def test_products_assistants_and_cities_are_not_people(detector: PIIDetector, text: str) -> None:
    assert untouched(detector, text), detector.detect(text)


@pytest.mark.parametrize(
    ("field", "value", "entity"),
    [
        ("ssn", "412859031", US_SSN),
        ("tax_id", "912-34-5678", US_SSN),
        ("dob", "1987-09-25", DATE_OF_BIRTH),
        ("passportNumber", "J7156601", PASSPORT),
        ("mrn", "B3730603", MEDICAL_RECORD_NUMBER),
        ("contact_phone", "4155550199", PHONE_NUMBER),
        ("customer_name", "li wei", PERSON),
        ("name", "wolfgangoberdorfer", PERSON),
    ],
)
def test_a_json_key_is_context_for_its_value(
    detector: PIIDetector, field: str, value: str, entity: str
) -> None:
    found = detector.detect(value, field=field)
    assert [(f.start, f.end, f.entity_type) for f in found] == [(0, len(value), entity)]


def test_keys_inside_a_text_are_context_too(detector: PIIDetector) -> None:
    text = '{"patient": {"date_of_birth": "2004-10-27", "mrn": "B3730603"}}'
    assert masked_whole(detector, text, "2004-10-27")
    assert masked_whole(detector, text, "B3730603")


def test_identifiers_under_a_name_key_are_not_people(detector: PIIDetector) -> None:
    for value in ("usr_4fdccb7763b79daf", "payments-db", "build_bot", "eu-west-1"):
        assert detector.detect(value, field="name") == [], value


def test_a_value_found_once_is_masked_everywhere_in_the_request(detector: PIIDetector) -> None:
    texts = ["Please onboard our analyst Seo Minjun.", "Minjun will get the welcome email."]
    found = propagate(texts, [detector.detect(t) for t in texts])
    assert [texts[1][f.start : f.end] for f in found[1]] == ["Minjun"]


def test_a_cancelled_request_stops_detection_of_a_long_text(detector: PIIDetector) -> None:
    from gateway.pii.detector import CancelToken, DetectionCancelled

    token = CancelToken()
    token.cancel()
    with pytest.raises(DetectionCancelled):
        detector.detect("word " * 5000, cancel=token)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("call (415)555-0199", "(415)555-0199"),
        ("Reach me at +14155550199", "+14155550199"),
        ("call +1–415–555–0199", "+1–415–555–0199"),
        ("card 4111.1111.1111.1111", "4111.1111.1111.1111"),
        ("card 4111 - 1111 - 1111 - 1111", "4111 - 1111 - 1111 - 1111"),
        ("card ４１１１１１１１１１１１１１１１", "４１１１１１１１１１１１１１１１"),
        ("Card No.4111111111111111", "4111111111111111"),
        ("IBAN gb82west12345698765432", "gb82west12345698765432"),
        ("IBANGB82WEST12345698765432", "GB82WEST12345698765432"),
        ("file scan_412-85-9031.pdf", "412-85-9031"),
        ("My SSN is 123-45-67\u200b89", "123-45-67\u200b89"),
        ("I am Marg\u200baret Thorn\u200bton", "Marg\u200baret Thorn\u200bton"),
        ("john.doe@exam\u00adple.com", "john.doe@exam\u00adple.com"),
        ("AKIAIOSFOD\u200bNN7EXAMPLE", "AKIAIOSFOD\u200bNN7EXAMPLE"),
    ],
)
def test_separators_and_invisible_characters_do_not_hide_a_value(
    detector: PIIDetector, text: str, value: str
) -> None:
    assert masked_whole(detector, text, value)


def test_two_ibans_in_one_sentence_are_both_masked(detector: PIIDetector) -> None:
    first, second = "DE16810479726793639601", "FR76 3097 6061 6791 3379 5154 086"
    text = f"send 2,500.00 from {first} to {second} ref 'rent June'."
    assert masked_whole(detector, text, first) and masked_whole(detector, text, second)


@pytest.mark.parametrize(
    "value",
    [
        "278 Cook Curve Apt. 922, Lake Marktown, TN 88934",
        "Flat 5\nKim Forges, Gregorytown B1G 6XG",
        "768 Mills Valleys Suite 649, Edwardsport, GA 21985",
    ],
)
def test_addresses_with_every_usps_suffix_and_uk_unit_lines_are_masked(
    detector: PIIDetector, value: str
) -> None:
    assert masked_whole(detector, f"ship to {value} please", value)


@pytest.mark.parametrize(
    "text",
    [
        "GET /api/v2/orders?page=3&per_page=50 returns 502",
        "Order shipped via UPS 1Z999AA10123456784, ETA Friday",
        "The SHA-256 is e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "shipped via Amazon Logistics 3 days ago",
    ],
)
def test_engineering_prose_that_looks_like_names_or_streets_stays(
    detector: PIIDetector, text: str
) -> None:
    assert untouched(detector, text), detector.detect(text)


def test_an_italian_street_with_a_slashed_number_is_masked_whole(detector: PIIDetector) -> None:
    value = "Via dei Mille 68/C, 80134 Napoli"
    assert masked_whole(detector, f"residing at {value}, then", value)

import base64
from typing import ClassVar
from urllib.parse import quote

import pytest

from gateway.pii.detector import DetectionError, PIIDetector


@pytest.fixture(scope="module")
def detector() -> PIIDetector:
    return PIIDetector(use_ner=False)


def masked(detector: PIIDetector, text: str, value: str) -> bool:
    start = text.index(value)
    return any(f.start <= start and f.end >= start + len(value) for f in detector.detect(text))


@pytest.mark.parametrize(
    "value",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "(212) 555-0147",
        "+44 20 7946 0958",
        "987-65-4320",
        "4111 1111 1111 1111",
        "jane@intranet.corp",
    ],
)
def test_credentials_phones_and_internal_addresses_are_masked(
    detector: PIIDetector, value: str
) -> None:
    text = f"note: {value} end"
    assert masked(detector, text, value)


def test_private_key_block_is_masked_whole(detector: PIIDetector) -> None:
    block = (
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\nAgEGCCqGSM49AwEH\n"
        "-----END PRIVATE KEY-----"
    )
    assert masked(detector, f"key:\n{block}\nthanks", block)


def test_percent_encoded_and_base64_values_are_masked(detector: PIIDetector) -> None:
    encoded = quote("jane.doe@corp.example", safe="")
    assert masked(detector, f"see ?to={encoded}", f"?to={encoded}")
    blob = base64.b64encode(b"email: jane.doe@corp.example").decode()
    assert masked(detector, f"payload {blob} ok", blob)


def test_plain_text_has_no_findings(detector: PIIDetector) -> None:
    assert detector.detect("How do Python generators work with send()?") == []


def test_a_failing_recognizer_fails_detection_closed() -> None:
    detector = PIIDetector(use_ner=False, cache_size=0)

    class Broken:
        entity_types: ClassVar[frozenset[str]] = frozenset({"X"})

        def find(self, text: str) -> list[object]:
            raise RuntimeError("boom with value alice@example.com")

    detector._recognizers.append(Broken())  # type: ignore[arg-type]
    with pytest.raises(DetectionError) as info:
        detector.detect("anything")
    assert "alice" not in str(info.value)


def test_the_result_cache_is_partitioned_by_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A cached answer is faster: a shared cache would tell one key what another sent.
    detector = PIIDetector(use_ner=False)
    scans: list[str] = []
    real = detector._scan_chunked

    def counting(text: str, cancel: object) -> list:  # type: ignore[type-arg]
        scans.append(text)
        return real(text, cancel)  # type: ignore[arg-type]

    monkeypatch.setattr(detector, "_scan_chunked", counting)
    text = "Please email jane.doe@example.com about the contract."
    first = detector.detect(text, scope="key-a")
    assert len(scans) == 1
    assert detector.detect(text, scope="key-a") == first and len(scans) == 1  # key A: cached
    assert detector.detect(text, scope="key-b") == first and len(scans) == 2  # key B: scanned

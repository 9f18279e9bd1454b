import json

from gateway.pii.restore import StreamRestorer, restore
from gateway.pii.vault import MAX_PLACEHOLDER_LEN, PlaceholderVault


def test_same_value_gets_the_same_placeholder_and_types_count_separately() -> None:
    vault = PlaceholderVault()
    a = vault.placeholder_for("EMAIL_ADDRESS", "a@x.org")
    assert vault.placeholder_for("EMAIL_ADDRESS", "a@x.org") == a == "<EMAIL_ADDRESS_1>"
    assert vault.placeholder_for("EMAIL_ADDRESS", "b@x.org") == "<EMAIL_ADDRESS_2>"
    assert vault.placeholder_for("PERSON", "Ann") == "<PERSON_1>"
    vault.placeholder_for("LITERAL", "<PERSON_1>")
    assert vault.counts() == {"EMAIL_ADDRESS": 2, "PERSON": 1}


def test_restore_replaces_only_issued_placeholders() -> None:
    vault = PlaceholderVault()
    vault.placeholder_for("PERSON", "Ann")
    assert restore("Hi <PERSON_1>, not <PERSON_2> or <b>", vault) == "Hi Ann, not <PERSON_2> or <b>"


def test_restore_into_json_escapes_the_value() -> None:
    vault = PlaceholderVault()
    placeholder = vault.placeholder_for("CREDENTIAL", 'line1\nsay "hi"\\')
    arguments = json.dumps({"key": placeholder})
    assert json.loads(restore(arguments, vault, json_escaped=True)) == {"key": 'line1\nsay "hi"\\'}


def stream(pieces: list[str], vault: PlaceholderVault) -> tuple[str, list[str]]:
    restorer = StreamRestorer(vault)
    out = [restorer.push(p) for p in pieces] + [restorer.finish()]
    return "".join(out), out


def test_placeholder_split_into_single_characters_is_restored() -> None:
    vault = PlaceholderVault()
    vault.placeholder_for("EMAIL_ADDRESS", "ann@x.org")
    text = "Write to <EMAIL_ADDRESS_1> today"
    restored, out = stream(list(text), vault)
    assert restored == "Write to ann@x.org today"
    assert out[len("Write to ") - 1] == " "  # text before the placeholder is not held back


def test_placeholder_split_at_every_position_is_restored() -> None:
    vault = PlaceholderVault()
    vault.placeholder_for("PERSON", "Zoë")
    text = "a<PERSON_1>b<PERSON_1><c"
    for cut in range(len(text) + 1):
        for cut2 in range(cut, len(text) + 1):
            restored, _ = stream([text[:cut], text[cut:cut2], text[cut2:]], vault)
            assert restored == "aZoëbZoë<c"


def test_holds_back_no_more_than_a_placeholder_can_be_long() -> None:
    vault = PlaceholderVault()
    restorer = StreamRestorer(vault)
    assert restorer.push("x < y") == "x < y"
    assert restorer.push("<ABC") == ""
    long_tail = "<" + "A" * (MAX_PLACEHOLDER_LEN + 5)
    released = restorer.push(long_tail[4:])
    assert released  # too long to still be a placeholder: released
    assert restorer.finish() == ""


def test_unknown_placeholder_is_left_as_written() -> None:
    restored, _ = stream(["<PERS", "ON_9> end"], PlaceholderVault())
    assert restored == "<PERSON_9> end"

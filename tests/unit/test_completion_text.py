from enclave_backend.text_output import CompletionText


def feed(text: CompletionText, pieces: list[bytes]) -> str:
    return "".join(text.push(p) for p in pieces) + text.finish()


def test_text_without_stops_passes_through() -> None:
    assert feed(CompletionText(), [b"Hel", b"lo", b" world"]) == "Hello world"


def test_utf8_character_split_across_tokens_is_emitted_whole() -> None:
    text = CompletionText()
    euro = "€".encode()
    assert text.push(euro[:1]) == ""
    assert text.push(euro[1:2]) == ""
    assert text.push(euro[2:] + b"!") == "€!"


def test_stop_string_across_token_boundaries_is_cut_and_never_emitted() -> None:
    text = CompletionText(stops=["END"])
    emitted = [text.push(p) for p in [b"abc E", b"N", b"D tail"]]
    assert emitted == ["abc ", "", ""]
    assert text.stopped
    assert text.finish() == ""


def test_partial_stop_that_does_not_complete_is_released() -> None:
    text = CompletionText(stops=["END"])
    assert text.push(b"the E") == "the "
    assert text.push(b"ND") == ""
    text = CompletionText(stops=["END"])
    assert text.push(b"the EN") == "the "
    assert text.push(b"d") == "ENd"


def test_held_back_tail_is_flushed_at_the_end() -> None:
    text = CompletionText(stops=["###"])
    assert text.push(b"done #") == "done "
    assert text.finish() == "#"


def test_earliest_of_several_stops_wins() -> None:
    assert feed(CompletionText(stops=["yy", "x"]), [b"ab", b"yyx"]) == "ab"
    assert feed(CompletionText(stops=["lo w", "world"]), [b"hello world"]) == "hel"


def test_holds_back_only_what_could_still_become_a_stop() -> None:
    text = CompletionText(stops=["<|end|>"])
    assert text.push(b"a < b and <|") == "a < b and "
    assert text.push(b"x") == "<|x"


def test_counts_decoded_and_emitted_characters_for_token_offsets() -> None:
    text = CompletionText(stops=["END"])
    assert text.push(b"ab") == "ab"
    assert (text.decoded, text.emitted) == (2, 2)
    assert text.push("é".encode()[:1]) == ""  # half a character decodes to nothing yet
    assert (text.decoded, text.emitted) == (2, 2)
    assert text.push("é".encode()[1:] + b" E") == "é "
    assert (text.decoded, text.emitted) == (5, 4)  # "E" may still start the stop
    assert text.push(b"ND") == ""
    assert text.stopped and text.emitted == 4

"""The incremental sentence splitter feeding TTS."""

from __future__ import annotations

import pytest

from hearth.server.engines.cascade.sentences import SentenceSplitter, is_speakable, split_sentences


def stream(text: str, step: int = 1, **kwargs: int | None) -> list[str]:
    """Feed `text` in `step`-character deltas, as an LLM would stream it."""
    splitter = SentenceSplitter(**kwargs)
    pieces: list[str] = []
    for i in range(0, len(text), step):
        pieces += splitter.feed(text[i : i + step])
    return pieces + splitter.flush()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you?", ["Hello there. ", "How are you?"]),
        ("Wow!! Really?! Yes.", ["Wow!! ", "Really?! ", "Yes."]),
        ("It is 3.5 degrees. Cold.", ["It is 3.5 degrees. ", "Cold."]),
        ("Call Dr. Smith now. Then rest.", ["Call Dr. Smith now. ", "Then rest."]),
        ("Mr. and Mrs. Jones are home.", ["Mr. and Mrs. Jones are home."]),
        ("Use a fruit, e.g. an apple. Done.", ["Use a fruit, e.g. an apple. ", "Done."]),
        ("That is, i.e. the lamp, on. Ok.", ["That is, i.e. the lamp, on. ", "Ok."]),
        ("Ask J. Smith today. Ok.", ["Ask J. Smith today. ", "Ok."]),
        ("Pens, paper, etc. and more. Fine.", ["Pens, paper, etc. and more. ", "Fine."]),
        ("Pens, paper, etc. Then more.", ["Pens, paper, etc. ", "Then more."]),
        ("Wake me at 7 a.m. tomorrow. Ok.", ["Wake me at 7 a.m. tomorrow. ", "Ok."]),
        ("Visit example.com today. Ok.", ["Visit example.com today. ", "Ok."]),
        ("It costs 1,000 dollars. Ok.", ["It costs 1,000 dollars. ", "Ok."]),
        ('He said "hi." Then left.', ['He said "hi." ', "Then left."]),
        ("(Yes.) No.", ["(Yes.) ", "No."]),
        ("Well… maybe. Ok.", ["Well… ", "maybe. ", "Ok."]),
        ("Lights:\n- kitchen\n- hall", ["Lights:\n", "- kitchen\n", "- hall"]),
        ("No terminator at the end", ["No terminator at the end"]),
        ("", []),
    ],
)
def test_splits_whole_and_streamed_text_alike(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected
    for step in (1, 2, 7):
        assert stream(text, step, first_clause_chars=None) == expected


def test_whitespace_after_an_emitted_sentence_goes_to_the_next_piece() -> None:
    assert split_sentences("Done.  ") == ["Done.  "]
    assert stream("Done.  ", 1) == ["Done. ", " "]


def test_sentences_come_out_as_soon_as_they_end() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello there.") == []  # "3." may still become "3.5"
    assert splitter.feed(" How") == ["Hello there. "]
    assert splitter.feed(" are you?") == []
    assert splitter.feed("\n") == ["How are you?\n"]
    assert splitter.flush() == []


def test_decimal_split_across_deltas_is_not_a_sentence_end() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("It is 3.") == []
    assert splitter.feed("5 degrees. ") == ["It is 3.5 degrees. "]


def test_abbreviation_waits_for_the_next_word() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Pens, paper, etc. ") == []
    assert splitter.feed("Then") == ["Pens, paper, etc. "]


def test_pieces_always_join_back_to_the_text() -> None:
    text = (
        "Sure!  I turned on the kitchen light, the hall lamp, and the porch light, "
        "which took a while.\n\nAnything else? Dr. Who says 2.5 is fine… ok"
    )
    for step in (1, 3, 11, len(text)):
        assert "".join(stream(text, step)) == text


def test_long_first_sentence_is_cut_at_a_clause() -> None:
    text = (
        "I turned on the kitchen light and the hall lamp for you just now, "
        "and the porch light will follow in a minute. The rest stays off, as asked."
    )
    pieces = stream(text, 4)
    assert pieces[0] == "I turned on the kitchen light and the hall lamp for you just now, "
    # Only the first piece is cut at a clause; later ones are whole sentences.
    assert pieces[1:] == [
        "and the porch light will follow in a minute. ",
        "The rest stays off, as asked.",
    ]
    assert "".join(pieces) == text


def test_streamed_first_piece_ends_at_its_first_clause() -> None:
    # The opening word goes out alone, so piper's first audio is that of a short piece.
    assert stream("Sure, here's a quick one. Why, then?", 1) == ["Sure, ", "here's a quick one. ", "Why, then?"]
    assert stream("Okay, done. Next, the lamp.", 3) == ["Okay, ", "done. ", "Next, the lamp."]


def test_first_clause_shorter_than_the_minimum_is_not_cut() -> None:
    assert stream("Hm, it is on. Ok.", 1) == ["Hm, it is on. ", "Ok."]


def test_a_sentence_end_before_the_first_clause_wins() -> None:
    assert stream("Done. Also, the lamp.", 1) == ["Done. ", "Also, the lamp."]


def test_whole_text_is_cut_at_sentence_ends_only() -> None:
    # A brain that sends its reply in one delta (the intents brain) keeps its sentences whole.
    assert stream("Okay, done. Next, the lamp.", 100) == ["Okay, done. ", "Next, the lamp."]


def test_first_clause_rule_can_be_turned_off() -> None:
    text = "I turned on the kitchen light and the hall lamp for you just now, and more."
    assert stream(text, 1, first_clause_chars=None) == [text]


def test_speakable() -> None:
    assert is_speakable("Hi. ")
    assert is_speakable("42")
    assert not is_speakable(" \n")
    assert not is_speakable("... ")

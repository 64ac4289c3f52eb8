"""Answer/transcript parser: the cases real responses produce."""

from __future__ import annotations

import pytest

from steerkit.gap.parse import answers_match, canonical_value, parse_number, parse_transcript


@pytest.mark.parametrize("response, value, method, ok", [
    ("<answer>85</answer>", "85", "tag", True),
    ("7+8=15 , write 5 carry 1 . 4+3+1=8 . <answer>85</answer>", "85", "tag", True),
    ("<answer> $1,000.00 </answer>", "1000", "tag", True),
    ("<ANSWER>18 dollars</ANSWER>", "18", "tag", True),
    ("< answer >3.50</ answer >", "3.5", "tag", True),
    ("<answer>12</answer> hmm, actually <answer>13</answer>", "13", "tag", True),
    ("<answer>85", "85", "unclosed_tag", False),
    ("first <answer>4</answer> then cut <answer>", "4", "tag", True),
    ("<answer>\\boxed{42}</answer>", "42", "tag", True),
    ("<answer>-7</answer>", "-7", "tag", True),
    ("<answer>3/4</answer>", "0.75", "tag", True),
    ("<answer>blue</answer>", "blue", "tag", True),
    ("so the total is \\boxed{72}.", "72", "boxed", False),
    ("She makes 9 * 2 = 18 dollars.", "18", "last_number", False),
    ("I cannot read the image.", None, "none", False),
    ("", None, "none", False),
])
def test_parse_number(response, value, method, ok):
    parsed = parse_number(response)
    assert (parsed.value, parsed.method, parsed.format_ok) == (value, method, ok)


def test_no_fallback():
    assert parse_number("the answer is 5", fallback=False).value is None


def test_answers_match():
    assert answers_match("18.0", "18") and answers_match("$1,000", "1000") and answers_match("0.75", "3/4")
    assert not answers_match("17", "18") and not answers_match(None, "18") and not answers_match("", "18")
    assert answers_match("Blue", "blue") and not answers_match("red", "blue")
    assert canonical_value("1,000.50 dollars") == "1000.5"


def test_parse_transcript():
    assert parse_transcript("<transcript> 47+38 </transcript> 7+8=15 <answer>85</answer>") == "47+38"
    assert parse_transcript("<transcript>47+38 then <answer>85</answer>") == "47+38 then"
    assert parse_transcript("<answer>85</answer>") is None
    assert parse_transcript("<transcript>a</transcript><transcript>b</transcript>") == "b"

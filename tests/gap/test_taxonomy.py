"""Reading-vs-thinking tags and length statistics on hand-made rows."""

from __future__ import annotations

import pandas as pd

from steerkit.gap.taxonomy import char_error_rate, false_equations, levenshtein, number_errors, tag_errors

Q = "Tom has 12 apples and buys 30 more. How many?"


def _row(mode, response, transcript, correct, answer="42", fmt=True, method="tag"):
    return dict(item_id="a", mode=mode, question=Q, response=response, transcript=transcript, correct=correct,
                answer=answer, format_ok=fmt, parse_method=method)


def test_metrics():
    assert levenshtein("kitten", "sitting") == 3
    assert char_error_rate("Tom has 12 apples", "tom  has 12 apples") == 0.0
    assert char_error_rate("47+36", "47+38") == 0.2
    assert number_errors("Tom has 17 apples and buys 30 more", Q) == 1
    assert number_errors("Tom has 12 apples and buys 30 more", Q) == 0
    assert false_equations("7+8=15 , 4+3+1=8 , 12*3 = 35, 12/60 = $0.2") == ["12*3=35"]


def test_tags():
    df = pd.DataFrame([
        _row("ocr_1p", "<answer>42</answer>", Q, True),
        _row("ocr_1p", "12+30=43 <answer>43</answer>", Q, False, "43"),          # right reading, bad sum
        _row("ocr_1p", "<answer>47</answer>", Q.replace("12", "17"), False, "47"),  # misread a number
        _row("ocr_2p", "so 40 <answer>40", Q, False, "40", fmt=False, method="unclosed_tag"),
        _row("ocr_1p", "I see", None, False, None, fmt=False, method="none"),
        _row("instruction_image", "<answer>1</answer>", None, False, "1"),
        _row("text", "", None, False, None, fmt=False, method="none"),
        _row("ocr_2p", "<answer>41</answer>", Q, False, "41"),
        _row("ocr_external", "<answer>43</answer>", Q.replace("12", "1 2"), False, "43"),  # spaced digits
        _row("ocr_external", "<answer>43</answer>", Q.replace("apples", "appels"), False, "43"),  # text typo
    ])
    t = tag_errors(df)
    assert list(t["error_type"]) == ["correct", "thinking", "reading", "thinking", "no_transcript", "untagged",
                                     "thinking", "thinking", "reading", "thinking"]
    assert list(t["error_subtype"]) == ["", "calculation", "wrong_numbers", "format", "", "reasoning",
                                        "incomplete", "reasoning", "spacing", "reasoning"]

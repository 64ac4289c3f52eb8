"""Reading vs thinking: why an image-mode answer is wrong, and whether image-mode reasoning collapses.

Where a transcript exists (the OCR modes), each wrong image-mode answer is tagged:

- ``reading``: the transcript differs from the source problem: a number in it is wrong or missing, or its
  character error rate (CER, edit distance / source length, after normalising case and whitespace) is above
  ``cer_threshold``. Sub-tagged ``spacing`` when the characters are all right and only whitespace differs (an
  OCR engine that reads "69+29" as "6 9 + 2 9" splits the numbers a model then sees), else ``wrong_numbers`` (a
  number missing or altered) or ``text_errors``;
- ``thinking``: the transcript is right but the answer is wrong. Sub-tagged ``calculation`` (the response holds a
  false equation "a op b = c"), ``format`` (no closed ``<answer>`` tag), ``incomplete`` (no answer at all), or
  ``reasoning`` (none of these);
- ``no_transcript``: an OCR mode whose response has no transcript to judge.

:func:`length_stats` gives response-length statistics per mode; the paper's "reasoning collapse" is image-mode
responses far shorter than text-mode ones on the same items.

Example:
    >>> tagged = tag_errors(df)
    >>> error_shares(tagged)
    >>> length_stats(df)
"""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

_NUM = re.compile(r"\d+(?:[.,]\d+)*")
_EQ = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/x×])\s*(-?\d+(?:\.\d+)?)\s*=\s*\$?(-?\d+(?:\.\d+)?)")


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("\u2019", "'")).strip().lower()


def char_error_rate(hypothesis: str, reference: str) -> float:
    """Character error rate of a transcript against the source (case and whitespace normalised).

    Example:
        >>> char_error_rate("47+36", "47+38")
        0.2
    """
    ref, hyp = _norm(reference), _norm(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return levenshtein(hyp, ref) / len(ref)


def numbers_in(text: str) -> list[str]:
    """The numbers of a text in order, thousands separators removed ("$80,000" -> "80000")."""
    return [n.replace(",", "") for n in _NUM.findall(text)]


def number_errors(transcript: str, source: str) -> int:
    """How many of the source's numbers are missing from (or altered in) the transcript (multiset difference)."""
    missing = Counter(numbers_in(source)) - Counter(numbers_in(transcript))
    return sum(missing.values())


def false_equations(response: str) -> list[str]:
    """Equations "a op b = c" in a response whose arithmetic is wrong (a calculation error).

    Example:
        >>> false_equations("4+3+1=8 , 7+8=16")
        ['7+8=16']
    """
    out = []
    for m in _EQ.finditer(response):
        a, op, b, c = float(m.group(1)), m.group(2), float(m.group(3)), float(m.group(4))
        # "4+3+1=8": the regex sees "3+1=8"; skip operands that continue a longer chain.
        start = m.start()
        if start > 0 and response[start - 1] in "+-*/x×":
            continue
        val = {"+": a + b, "-": a - b, "*": a * b, "x": a * b, "×": a * b, "/": a / b if b else float("nan")}[op]
        if abs(val - c) > 1e-6 * max(1.0, abs(c)):
            out.append(re.sub(r"\s+", "", m.group(0)))
    return out


def _reading_subtype(transcript: str, source: str, nerr: int) -> str:
    if re.sub(r"\s+", "", _norm(transcript)) == re.sub(r"\s+", "", _norm(source)):
        return "spacing"
    return "wrong_numbers" if nerr > 0 else "text_errors"


def _thinking_subtype(row: pd.Series) -> str:
    if row.get("answer") is None or row.get("parse_method") == "none":
        return "incomplete"
    if false_equations(str(row.get("response", ""))):
        return "calculation"
    if not row.get("format_ok", True):
        return "format"
    return "reasoning"


def tag_errors(df: pd.DataFrame, *, cer_threshold: float = 0.05) -> pd.DataFrame:
    """Add ``cer``, ``number_errors``, ``error_type`` (correct / reading / thinking / no_transcript / untagged)
    and ``error_subtype`` to a :func:`steerkit.gap.modes.run_gap` frame.

    Rows without a transcript column value in non-OCR modes get ``untagged`` when wrong (reading cannot be told
    from thinking there); text-mode errors are always ``thinking``.
    """
    out = df.copy()
    cers, nerrs, types, subs = [], [], [], []
    for _, row in out.iterrows():
        tr = row.get("transcript")
        has_tr = isinstance(tr, str)
        cer = char_error_rate(tr, row["question"]) if has_tr else float("nan")
        nerr = number_errors(tr, row["question"]) if has_tr else -1
        cers.append(cer)
        nerrs.append(nerr)
        if row["correct"]:
            types.append("correct")
            subs.append("")
            continue
        if row["mode"] == "text":
            types.append("thinking")
            subs.append(_thinking_subtype(row))
        elif not has_tr:
            is_ocr = str(row["mode"]).startswith("ocr")
            types.append("no_transcript" if is_ocr else "untagged")
            subs.append(_thinking_subtype(row) if not is_ocr else "")
        elif nerr > 0 or cer > cer_threshold:
            types.append("reading")
            subs.append(_reading_subtype(tr, row["question"], nerr))
        else:
            types.append("thinking")
            subs.append(_thinking_subtype(row))
    return out.assign(cer=cers, number_errors=nerrs, error_type=types, error_subtype=subs)


def error_shares(tagged: pd.DataFrame) -> pd.DataFrame:
    """Per mode: counts and shares of each error type among wrong answers (from :func:`tag_errors`)."""
    wrong = tagged[tagged["error_type"] != "correct"]
    if wrong.empty:
        return pd.DataFrame(columns=["mode", "error_type", "error_subtype", "count", "share"])
    counts = wrong.groupby(["mode", "error_type", "error_subtype"]).size().rename("count").reset_index()
    counts["share"] = counts["count"] / counts.groupby("mode")["count"].transform("sum")
    return counts


def length_stats(df: pd.DataFrame, *, baseline: str = "text") -> pd.DataFrame:
    """Response length per mode: mean/median characters and words, and the ratio of mean characters to the
    baseline mode on the same items (a ratio far below 1 is the paper's "reasoning collapse")."""
    stats = df.groupby("mode").agg(n=("response_chars", "size"), mean_chars=("response_chars", "mean"),
                                   median_chars=("response_chars", "median"), mean_words=("response_words", "mean"),
                                   format_ok=("format_ok", "mean")).reset_index()
    base = df[df["mode"] == baseline].set_index("item_id")["response_chars"]
    ratios = {}
    for mode, sub in df.groupby("mode"):
        s = sub.set_index("item_id")["response_chars"]
        common = s.index.intersection(base.index)
        ratios[mode] = float(s.loc[common].mean() / base.loc[common].mean()) if len(common) and \
            base.loc[common].mean() > 0 else float("nan")
    stats["chars_vs_" + baseline] = stats["mode"].map(ratios)
    return stats

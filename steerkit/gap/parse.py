"""Parse answers and transcripts out of free-form model responses.

Models are asked to put the final answer in ``<answer>...</answer>`` (and, in the OCR modes, the transcript in
``<transcript>...</transcript>``). Responses are messy: the tag may be unclosed (generation stopped), repeated
(the last one counts), padded, hold a unit, a currency sign, thousands separators, ``\\boxed{}`` or a sentence.
:func:`parse_number` handles these and records *how* it found the answer, so that format failures stay
countable (a missing tag is a format error even when a fallback finds the right number). (The letter a
multiple-choice answer names is read by :func:`steerkit.tasks.scoring.parse_letter`.)

Example:
    >>> parse_number("so 47+38=85 <answer> $85.00 </answer>").value
    '85'
    >>> parse_number("The answer is 85.").format_ok
    False
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_TAG = re.compile(r"<\s*answer\s*>(.*?)(?:<\s*/\s*answer\s*>|$)", re.IGNORECASE | re.DOTALL)
_TRANSCRIPT = re.compile(r"<\s*transcript\s*>(.*?)(?:<\s*/\s*transcript\s*>|<\s*answer\s*>|$)",
                         re.IGNORECASE | re.DOTALL)
_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_NUMBER = re.compile(r"[-−]?\s?\$?\s?\d(?:[\d,]*\d)?(?:\.\d+)?|[-−]?\.\d+")
_FRACTION = re.compile(r"^\s*(-?\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class ParsedAnswer:
    """What a response answered.

    Attributes:
        raw: the text found (inside the tag, or the fallback match), stripped; "" if nothing.
        value: canonical numeric string ("1000", "3.5") when the answer holds a number, else the normalised text;
            None when nothing was found.
        method: "tag" (a closed ``<answer>`` tag), "unclosed_tag", "boxed", "last_number" (fallback) or "none".
        format_ok: True only for a closed tag with something inside.
    """

    raw: str
    value: str | None
    method: str
    format_ok: bool


def canonical_value(text: str) -> str | None:
    """The canonical form of an answer string: the first number in it (commas, $, trailing zeros removed),
    a reduced fraction as a decimal, or the lower-cased text with spaces collapsed when there is no number.

    Example:
        >>> canonical_value("1,000.50 dollars"), canonical_value("3/4"), canonical_value(" Blue ")
        ('1000.5', '0.75', 'blue')
    """
    t = text.strip()
    boxed = _BOXED.search(t)
    if boxed:
        t = boxed.group(1)
    if not t:
        return None
    frac = _FRACTION.match(t)
    if frac and int(frac.group(2)) != 0:
        return _fmt(int(frac.group(1)) / int(frac.group(2)))
    m = _NUMBER.search(t)
    if m:
        s = m.group(0).replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
        try:
            return _fmt(float(s)) if "." in s else str(int(s))
        except ValueError:
            pass
    return re.sub(r"\s+", " ", t).strip(" .").lower() or None


def _fmt(x: float) -> str:
    if math.isfinite(x) and x == int(x):
        return str(int(x))
    return repr(round(x, 9)).rstrip("0").rstrip(".")


def parse_number(response: str, *, fallback: bool = True) -> ParsedAnswer:
    """Extract the final answer from ``response`` (the last ``<answer>`` tag wins).

    Without a tag, ``fallback=True`` tries ``\\boxed{}`` and then the last number in the response
    (``format_ok`` is False either way).

    Example:
        >>> parse_number("<answer>12</answer> wait <answer>13</answer>").value
        '13'
        >>> parse_number("<answer>85").method
        'unclosed_tag'
    """
    tags = list(_TAG.finditer(response or ""))
    # The last non-empty tag wins; an empty trailing "<answer>" (generation cut right after it) is skipped.
    for m in reversed(tags):
        inner = m.group(1).strip()
        if inner:
            closed = bool(re.search(r"<\s*/\s*answer\s*>\s*$", m.group(0), re.IGNORECASE))
            return ParsedAnswer(inner, canonical_value(inner), "tag" if closed else "unclosed_tag", closed)
    if not fallback or not response:
        return ParsedAnswer("", None, "none", False)
    boxed = _BOXED.findall(response)
    if boxed:
        return ParsedAnswer(boxed[-1].strip(), canonical_value(boxed[-1]), "boxed", False)
    numbers = _NUMBER.findall(response)
    if numbers:
        return ParsedAnswer(numbers[-1].strip(), canonical_value(numbers[-1]), "last_number", False)
    return ParsedAnswer("", None, "none", False)


def answers_match(predicted: str | None, gold: str, *, rel_tol: float = 1e-6) -> bool:
    """Whether a parsed value equals the gold answer (numerically when both are numbers).

    Example:
        >>> answers_match("18.0", "18"), answers_match("17", "18"), answers_match(None, "18")
        (True, False, False)
    """
    if predicted is None:
        return False
    p, g = canonical_value(predicted), canonical_value(gold)
    if p is None or g is None:
        return False
    try:
        return math.isclose(float(p), float(g), rel_tol=rel_tol, abs_tol=1e-9)
    except ValueError:
        return p == g


def parse_transcript(response: str) -> str | None:
    """The transcript inside ``<transcript>...</transcript>`` (the last one; unclosed tags run to ``<answer>`` or
    the end), or None when the response has no transcript tag.

    Example:
        >>> parse_transcript("<transcript> 47+38 </transcript> 7+8=15 ... <answer>85</answer>")
        '47+38'
    """
    found = list(_TRANSCRIPT.finditer(response or ""))
    return found[-1].group(1).strip() if found else None


"""Text problems for the modality-gap experiments, in one schema.

Sources, all returning :class:`TextProblem` (question, answer, id, source, extra):

- :func:`load_gsm8k`: GSM8K through ``datasets.load_dataset("openai/gsm8k", "main")`` (or a local parquet in the
  same schema: columns ``question`` and ``answer``, the answer's final value after ``####``).
- :func:`word_problems`: a seeded offline generator of GSM8K-style multi-step word problems whose answers are
  computed exactly (integers), with a worked solution in ``extra["solution"]``.
- a model profile's own problems (:mod:`steerkit.models.profiles`), e.g. the organism's two-digit additions with
  its chain-of-thought trace and its own text/image prompts in ``extra``; :func:`problem_set` picks any by name.

Example:
    >>> probs = word_problems(4, seed=0)
    >>> probs[0].answer
    '18'
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from steerkit.errors import DataError

GSM8K_ID = "openai/gsm8k"


@dataclass(frozen=True)
class TextProblem:
    """One problem with an exact answer, asked as text or rendered as pixels.

    Attributes:
        question: the problem statement (what gets rendered in image modes).
        answer: the exact final answer as a canonical string ("18", "3.5").
        id: stable identifier.
        source: "gsm8k", "synthetic" or a model profile's source name (e.g. "organism").
        extra: source-specific fields (GSM8K solution, a profile's trace and prompts, template name...).
    """

    question: str
    answer: str
    id: str
    source: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (for DataFrames)."""
        return asdict(self)


def problems_frame(problems: Sequence[TextProblem]) -> pd.DataFrame:
    """The problems as a DataFrame (one row each; ``extra`` kept as a dict column)."""
    return pd.DataFrame([p.to_dict() for p in problems])


# ------------------------------------------------------------------------------------------------ GSM8K
_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def canonical_number(text: str) -> str:
    """Canonical string of a number: commas, currency and trailing zeros removed ("1,000.50" -> "1000.5").

    Raises :class:`DataError` when ``text`` holds no number.
    """
    m = _NUM.search(text.replace("$", "").replace(" ", ""))
    if not m:
        raise DataError(f"no number in {text!r}")
    s = m.group(0).replace(",", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def gsm8k_final_answer(solution: str) -> str:
    """The final answer of a GSM8K solution: the number after ``####``.

    Example:
        >>> gsm8k_final_answer("She makes 9 * 2 = $<<9*2=18>>18 every day.\\n#### 18")
        '18'
    """
    if "####" not in solution:
        raise DataError(f"GSM8K answer without '####': {solution[-80:]!r}; is this the 'main' config's answer "
                        "column?")
    return canonical_number(solution.rsplit("####", 1)[1])


def gsm8k_problems(rows: Iterable[Mapping[str, Any]], split: str = "test") -> list[TextProblem]:
    """Convert rows in GSM8K's schema (``question``, ``answer``) to :class:`TextProblem`.

    Malformed rows raise :class:`DataError` naming the row index.
    """
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise DataError(f"GSM8K row {i} lacks string 'question'/'answer' fields: {sorted(row)}")
        try:
            final = gsm8k_final_answer(row["answer"])
        except DataError as exc:
            raise DataError(f"GSM8K row {i}: {exc}") from exc
        out.append(TextProblem(question=row["question"].strip(), answer=final, id=f"gsm8k-{split}-{i}",
                               source="gsm8k", extra={"solution": row["answer"], "split": split, "index": i}))
    return out


def load_gsm8k(split: str = "test", n: int | None = None, *, path: str | Path | None = None,
               seed: int | None = None) -> list[TextProblem]:
    """GSM8K problems from the hub (``openai/gsm8k``, config ``main``) or from a local parquet file/folder.

    ``path`` may be a parquet file or a folder laid out like the hub repo (``main/<split>-*.parquet``).
    ``n`` keeps the first n rows (after a seeded shuffle when ``seed`` is given).

    Example:
        >>> probs = load_gsm8k("test", n=100)
        >>> probs = load_gsm8k("test", path="tests/gap/fixtures/gsm8k")
    """
    import datasets

    if path is None:
        ds = datasets.load_dataset(GSM8K_ID, "main", split=split)
    else:
        p = Path(path)
        if p.is_dir():
            files = sorted(p.glob(f"main/{split}-*.parquet")) or sorted(p.glob(f"{split}-*.parquet"))
            if not files:
                raise DataError(f"no {split}-*.parquet under {p} (expected the hub layout main/{split}-*.parquet)")
        elif p.is_file():
            files = [p]
        else:
            raise DataError(f"{p} does not exist; pass a parquet file or a folder with main/{split}-*.parquet")
        ds = datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split)
    if seed is not None:
        ds = ds.shuffle(seed=seed)
    if n is not None:
        ds = ds.select(range(min(n, len(ds))))
    return gsm8k_problems(ds, split=split)


# ------------------------------------------------------------------------------------------------ synthetic
_NAMES = ("Janet", "Ali", "Maria", "Tom", "Priya", "Kenji", "Lena", "Omar", "Sofia", "Ben", "Chloe", "Ravi")
_ITEMS = ("apples", "pencils", "stickers", "cookies", "marbles", "books", "eggs", "cards")


def _tpl_buy_sell(r: random.Random) -> tuple[str, int, str]:
    name, item = r.choice(_NAMES), r.choice(_ITEMS)
    boxes, per_box, used, price = r.randint(2, 9), r.randint(3, 12), r.randint(1, 10), r.randint(2, 9)
    total = boxes * per_box
    used = min(used, total - 1)
    ans = (total - used) * price
    q = (f"{name} buys {boxes} boxes of {item} with {per_box} {item} in each box. {name} keeps {used} of them and "
         f"sells the rest for ${price} each. How many dollars does {name} make?")
    sol = f"{boxes} * {per_box} = {total}. {total} - {used} = {total - used}. {total - used} * {price} = {ans}."
    return q, ans, sol


def _tpl_weekly(r: random.Random) -> tuple[str, int, str]:
    name = r.choice(_NAMES)
    a, b, weeks = r.randint(2, 15), r.randint(2, 15), r.randint(2, 8)
    ans = (a * 5 + b * 2) * weeks
    q = (f"{name} reads {a} pages every weekday and {b} pages on each day of the weekend. How many pages does "
         f"{name} read in {weeks} weeks?")
    sol = f"{a} * 5 = {a * 5}. {b} * 2 = {b * 2}. {a * 5} + {b * 2} = {a * 5 + b * 2}. " \
          f"{a * 5 + b * 2} * {weeks} = {ans}."
    return q, ans, sol


def _tpl_share(r: random.Random) -> tuple[str, int, str]:
    name, other, item = r.choice(_NAMES), r.choice(_NAMES), r.choice(_ITEMS)
    bags, each, given = r.randint(2, 6), r.randint(3, 12), r.randint(1, 20)
    start = bags * each + given
    while other == name:
        other = r.choice(_NAMES)
    q = (f"{name} has {start} {item}. {name} gives {given} {item} to {other} and puts the rest into {bags} bags "
         f"with the same number of {item} in each bag. How many {item} are in each bag?")
    sol = f"{start} - {given} = {start - given}. {start - given} / {bags} = {each}."
    return q, each, sol


def _tpl_age(r: random.Random) -> tuple[str, int, str]:
    a, b = r.sample(_NAMES, 2)
    age_b = r.randint(3, 20)
    mult = r.randint(2, 4)
    years = r.randint(2, 15)
    ans = age_b * mult + years
    q = f"{a} is {mult} times as old as {b}. {b} is {age_b} years old. How old will {a} be in {years} years?"
    sol = f"{age_b} * {mult} = {age_b * mult}. {age_b * mult} + {years} = {ans}."
    return q, ans, sol


def _tpl_percent(r: random.Random) -> tuple[str, int, str]:
    name, item = r.choice(_NAMES), r.choice(_ITEMS)
    price = r.randint(2, 20) * 10
    pct = r.choice((10, 20, 25, 50))
    qty = r.randint(2, 6)
    disc = price * pct // 100
    ans = (price - disc) * qty
    q = (f"A pack of {item} costs ${price}. The store gives a {pct}% discount. How many dollars does {name} pay "
         f"for {qty} packs?")
    sol = f"{price} * {pct}% = {disc}. {price} - {disc} = {price - disc}. {price - disc} * {qty} = {ans}."
    return q, ans, sol


def _tpl_trip(r: random.Random) -> tuple[str, int, str]:
    name = r.choice(_NAMES)
    speed, hours, back_speed = r.randint(3, 12) * 5, r.randint(2, 6), 0
    dist = speed * hours
    back_speed = r.choice([d for d in range(10, 80, 5) if dist % d == 0] or [speed])
    ans = hours + dist // back_speed
    q = (f"{name} drives at {speed} miles per hour for {hours} hours, then drives back the same way at "
         f"{back_speed} miles per hour. How many hours does the whole trip take?")
    sol = f"{speed} * {hours} = {dist}. {dist} / {back_speed} = {dist // back_speed}. {hours} + " \
          f"{dist // back_speed} = {ans}."
    return q, ans, sol


TEMPLATES: dict[str, Callable[[random.Random], tuple[str, int, str]]] = {
    "buy_sell": _tpl_buy_sell,
    "weekly": _tpl_weekly,
    "share": _tpl_share,
    "age": _tpl_age,
    "percent": _tpl_percent,
    "trip": _tpl_trip,
}


def word_problems(n: int, seed: int = 0, *, templates: Sequence[str] | None = None,
                  split: str = "test") -> list[TextProblem]:
    """``n`` seeded GSM8K-style word problems (2-4 arithmetic steps) with exact integer answers.

    Each problem's numbers come from an RNG named by (seed, split, index), so problem i is the same whatever
    ``n`` is. ``extra`` holds the template name and a worked solution ending in the answer. Held out by
    construction: a problem belongs to ``"train"`` or ``"test"`` by a hash of its text
    (:func:`steerkit.tasks.splits.content_split`) and is redrawn until it lands in ``split``, so no test problem is
    ever a training problem, whatever the seeds.

    Example:
        >>> [p.answer for p in word_problems(3, seed=1)] == [p.answer for p in word_problems(3, seed=1)]
        True
    """
    names = list(templates or TEMPLATES)
    unknown = [t for t in names if t not in TEMPLATES]
    if unknown:
        raise DataError(f"unknown templates {unknown}; choose from {sorted(TEMPLATES)}")
    from steerkit.tasks.splits import check_split, content_split

    check_split(split)
    out = []
    for i in range(n):
        r = random.Random(zlib.crc32(f"wordproblem|{seed}|{split}|{i}".encode()))
        tpl = names[i % len(names)]
        q, ans, sol = TEMPLATES[tpl](r)
        while content_split("wordproblem|" + q) != split:  # rejection sampling: redraw until it is in the split
            q, ans, sol = TEMPLATES[tpl](r)
        out.append(TextProblem(question=q, answer=str(ans), id=f"synthetic-{split}-{seed}-{i}", source="synthetic",
                               extra={"template": tpl, "solution": f"{sol} The answer is {ans}.", "split": split}))
    return out


def problem_set(source: str, n: int, *, seed: int = 0, split: str = "test", model: str | None = None,
                path: str | Path | None = None) -> list[TextProblem]:
    """Problems by name: ``"synthetic"``, ``"gsm8k"`` (``path`` for a local parquet), a model profile's name (its
    own problems, e.g. ``"organism"``: the organism's two-digit additions), or ``"auto"`` (the problems of
    ``model``'s profile when it has some, else synthetic word problems).

    Example:
        >>> problem_set("auto", 20, model="steerkit/organism")[0].source
        'organism'
    """
    from steerkit.models.profiles import find_profile, profile_names

    if source == "auto":
        profile = find_profile(model)
        source = profile.source if profile is not None and profile.problems is not None else "synthetic"
    if source == "synthetic":
        return word_problems(n, seed=seed, split=split)
    if source == "gsm8k":
        return load_gsm8k(split, n=n, path=path, seed=seed)
    profile = find_profile(source)
    if profile is not None and profile.problems is not None:
        return profile.problems(n, seed=seed, split=split)
    raise DataError(f"unknown problem source {source!r}; choose 'auto', 'synthetic', 'gsm8k' or a model profile "
                    f"with problems ({profile_names()})")

"""The one item schema every vision task is loaded into: multiple-choice, with an optional open form
(:class:`~steerkit.tasks.open_answer.OpenAnswer`) for questions answered by generation."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from steerkit.errors import DataError
from steerkit.tasks.open_answer import OpenAnswer

LETTERS = string.ascii_uppercase


@dataclass
class Item:
    """One question about an image: multiple-choice, and optionally with an open form answered by generation.

    ``prompt`` is the full question text shown to the model (for CV-Bench: question + " Select from the
    following choices.\\n(A) ...\\n(B) ..."); ``answer`` is the correct letter ("A", "B", ...).
    ``open`` (an :class:`~steerkit.tasks.open_answer.OpenAnswer`, or a mapping with its fields): the question without
    choices, its gold answer and its parser; a sweep with ``answer="auto"`` generates such items (see
    :mod:`steerkit.tasks.open_answer`). An item with an open form may have no choices (``choices=[]``, ``answer=""``).

    Example:
        >>> Item(id="1", image=None, prompt="Q? (A) x (B) y", choices=["x", "y"], answer="B", task="Count")
        >>> Item(id="2", image=None, prompt="How many? (A) 2 (B) 3", choices=["2", "3"], answer="B", task="Count",
        ...      open=OpenAnswer("How many? Answer with a single number.", "3"))
    """

    id: str
    image: Image.Image | None
    prompt: str
    choices: list[str]
    answer: str
    task: str
    source: str = ""
    split: str = ""
    question: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    open: OpenAnswer | None = None

    def __post_init__(self) -> None:
        self.answer = self.answer.strip().strip("()").upper()
        self.open = OpenAnswer.coerce(self.open)
        if self.open is not None and not self.open.prompt.strip() and self.image is None:
            raise DataError(f"item {self.id!r}: an empty open-form prompt needs an image that carries the question; "
                            "give open.prompt the question (without choices)")
        if not self.choices and self.open is not None:
            if self.answer:
                raise DataError(f"item {self.id!r}: answer {self.answer!r} without choices; an open-only item "
                                "keeps its gold answer in open.answer and has answer=''")
            return
        if not self.choices:
            raise DataError(f"item {self.id!r}: no choices; a multiple-choice item needs >= 2 (an item answered "
                            "only by generation needs an open form: open=OpenAnswer(prompt, answer))")
        if self.answer not in LETTERS[: len(self.choices)]:
            raise DataError(
                f"item {self.id!r}: answer {self.answer!r} is not one of the choice letters "
                f"{list(LETTERS[: len(self.choices)])}; fix the row or drop it"
            )

    @property
    def letters(self) -> list[str]:
        """The choice letters of this item, e.g. ["A", "B", "C"]."""
        return list(LETTERS[: len(self.choices)])

    @property
    def answer_index(self) -> int:
        """0-based index of the correct choice."""
        return LETTERS.index(self.answer)

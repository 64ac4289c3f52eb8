"""The one item schema every multiple-choice vision task is loaded into."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from steerkit.errors import DataError

LETTERS = string.ascii_uppercase


@dataclass
class Item:
    """One multiple-choice question about an image.

    ``prompt`` is the full question text shown to the model (for CV-Bench: question + " Select from the
    following choices.\\n(A) ...\\n(B) ..."); ``answer`` is the correct letter ("A", "B", ...).

    Example:
        >>> Item(id="1", image=None, prompt="Q? (A) x (B) y", choices=["x", "y"], answer="B", task="Count")
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

    def __post_init__(self) -> None:
        self.answer = self.answer.strip().strip("()").upper()
        if not self.choices:
            raise DataError(f"item {self.id!r}: no choices; a multiple-choice item needs >= 2")
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

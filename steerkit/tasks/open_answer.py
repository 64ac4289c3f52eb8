"""Open answers: how an item is answered by generation, and the one place generated text is read.

An :class:`~steerkit.tasks.schema.Item` says how it is answered through its ``open`` field:

* ``open is None``: a multiple-choice item. Scored by the answer-letter log-likelihood (the letter scorer); when a
  sweep asks it to generate (``answer="generate"``), its multiple-choice prompt is generated from and the response
  read as a choice letter (:func:`steerkit.tasks.scoring.parse_letter`): the paper's full protocol.
* ``open = OpenAnswer(prompt, answer, parser, auto)``: the item also has an open form -- the question asked
  without choices (``prompt``, sent as it is: no multiple-choice prefix) and its gold ``answer`` -- and is read by
  ``parser``:

  - ``"integer"``: the one integer in the response (:func:`steerkit.tasks.loaders.clevr.parse_count`; a response
    with no integer or several is unanswered), compared as an integer (CLEVR / Super-CLEVR counting);
  - ``"answer_tag"``: the last ``<answer>...</answer>`` (fallbacks: ``\\boxed{}``, the last number;
    :func:`steerkit.gap.parse.parse_number`), compared numerically when both are numbers
    (:func:`steerkit.gap.parse.answers_match`) -- the gap harness's problems.

  ``auto`` says what a sweep with ``answer="auto"`` does with it: ``"generate"`` (generation only) or ``"both"``
  (generation, and the letter scorer on its multiple-choice form). An open item may have no choices at all
  (``choices=[]``, ``answer=""``; :func:`open_item`); it can then only be generated.

Example:
    >>> it = open_item("p1", "What is 47 + 38? Put the result in <answer></answer>.", "85", parser="answer_tag")
    >>> score_generation(it, "47+38 = 85 <answer>85</answer>")
    {'gen_text': '47+38 = 85 <answer>85</answer>', 'gen_pred': '85', 'gen_correct': True}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steerkit.errors import DataError

if TYPE_CHECKING:
    from steerkit.tasks.schema import Item

PARSERS = ("integer", "answer_tag")
AUTO = ("generate", "both")


@dataclass(frozen=True)
class OpenAnswer:
    """The open form of an item: the question without choices, its gold answer, how a response is read.

    Attributes:
        prompt: the full open-form question sent to the model (the adapter adds the chat template and the image);
            empty only when the item's image carries the whole question (the gap harness's ``image`` mode).
        answer: the gold answer as text ("3", "85").
        parser: "integer" or "answer_tag" (see the module docstring).
        auto: what ``answer="auto"`` does with the item: "generate" or "both" (also score its letter form).

    Example:
        >>> OpenAnswer("How many cubes are there? Answer with a single number.", "3")
    """

    prompt: str
    answer: str
    parser: str = "integer"
    auto: str = "generate"

    def __post_init__(self) -> None:
        object.__setattr__(self, "answer", str(self.answer).strip())
        if not self.answer:
            raise DataError("an open answer needs its gold answer")
        if self.parser not in PARSERS:
            raise DataError(f"open answer parser {self.parser!r}: use one of {list(PARSERS)}")
        if self.auto not in AUTO:
            raise DataError(f"open answer auto={self.auto!r}: use 'generate' or 'both' (also the letter scorer)")
        if self.parser == "integer":
            _integer(self.answer)  # a gold answer the parser cannot read would make every response wrong

    @classmethod
    def coerce(cls, value: OpenAnswer | dict[str, Any] | None) -> OpenAnswer | None:
        """An :class:`OpenAnswer` from itself, a ``{"prompt", "answer", "parser", "auto"}`` mapping, or None."""
        if value is None or isinstance(value, OpenAnswer):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"prompt", "answer", "parser", "auto"})
            if unknown:
                raise DataError(f"open answer keys {unknown} unknown; use prompt, answer, parser, auto")
            return cls(**value)
        raise DataError(f"open answer {value!r}: give an OpenAnswer or a mapping with prompt and answer")

    def parse(self, text: str) -> str | None:
        """The answer a response gives, canonical ("3", "85", "0.5"), or None when it gives none."""
        if self.parser == "integer":
            try:
                return str(_integer(text))
            except DataError:
                return None
        from steerkit.gap.parse import parse_number

        return parse_number(text).value

    def is_correct(self, pred: str | None) -> bool:
        """Whether a parsed answer equals the gold one (as integers, or :func:`steerkit.gap.parse.answers_match`)."""
        if pred is None:
            return False
        if self.parser == "integer":
            return pred == str(_integer(self.answer))
        from steerkit.gap.parse import answers_match

        return answers_match(pred, self.answer)


def _integer(text: Any) -> int:
    from steerkit.tasks.loaders.clevr import parse_count

    return parse_count(text)


def open_item(item_id: str, prompt: str, answer: str, *, parser: str = "answer_tag", image: Any = None,
              task: str = "open", source: str = "", split: str = "", extra: dict[str, Any] | None = None) -> Item:
    """An item with only an open form (no choices): it is always answered by generation.

    Example:
        >>> open_item("gsm/1", "Natalia sold 48 clips... Put the final answer in <answer></answer>.", "72").open.parser
        'answer_tag'
    """
    from steerkit.tasks.schema import Item

    return Item(id=item_id, image=image, prompt=prompt, choices=[], answer="", task=task, source=source, split=split,
                extra=dict(extra or {}), open=OpenAnswer(prompt, answer, parser))


def generation_prompt(item: Item, prefix: str, hint: str = "") -> str:
    """What a generated answer is prompted with: the open-form prompt as it is, else ``prefix`` + the multiple-choice
    prompt (the paper's protocol); with ``hint``, the prompting baseline's hint goes before the question as
    :func:`steerkit.tasks.splits.with_hint` puts it there for the letter scorer."""
    import dataclasses

    from steerkit.tasks.splits import with_hint

    text = item.open.prompt if item.open is not None else item.prompt
    if hint:
        text = with_hint([dataclasses.replace(item, prompt=text)], hint)[0].prompt
    return text if item.open is not None else f"{prefix}{text}"


def score_generation(item: Item, text: str) -> dict[str, Any]:
    """``gen_text``, ``gen_pred`` (the parsed answer: the open parser's, else the choice letter; "" when the response
    gives none) and ``gen_correct`` of one generated response."""
    if item.open is not None:
        pred = item.open.parse(text)
        return {"gen_text": text, "gen_pred": pred or "", "gen_correct": item.open.is_correct(pred)}
    from steerkit.tasks.scoring import parse_letter

    letter = parse_letter(text, item.choices) or ""
    return {"gen_text": text, "gen_pred": letter, "gen_correct": bool(letter) and letter == item.answer}


def gold_answer(item: Item) -> str:
    """The answer a generation of ``item`` is scored against: the open answer, else the choice letter."""
    return item.open.answer if item.open is not None else item.answer


__all__ = ["OpenAnswer", "PARSERS", "AUTO", "open_item", "generation_prompt", "score_generation", "gold_answer"]

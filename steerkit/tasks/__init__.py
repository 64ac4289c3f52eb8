"""steerkit.tasks: multiple-choice vision items (optionally with an open form answered by generation), loaders, a
synthetic generator, scoring, splits and statistics.

Example:
    >>> from steerkit.tasks import generate, evaluate, paper_split, accuracy_table
    >>> items = paper_split(generate(n_per_task=40, seed=0))
    >>> df = evaluate(model, processor, items)
    >>> accuracy_table(df)
"""

from steerkit.tasks.evaluate import Condition, evaluate
from steerkit.tasks.loaders import (LoadedItems, load_blink, load_clevr_count, load_cvbench, load_superclevr_count,
                                    load_whatsup)
from steerkit.tasks.open_answer import OpenAnswer, open_item
from steerkit.tasks.schema import LETTERS, Item
from steerkit.tasks.scoring import (PAPER_PREFIX, LetterScorer, build_prompt, cvbench_scores, generate_answers,
                                    letter_logprobs, letter_token_ids, parse_letter)
from steerkit.tasks.splits import CONCEPT_HINTS, hint_for, paper_split, stratified_split, with_hint
from steerkit.tasks.stats import (Interval, McNemar, accuracy_table, bootstrap_ci, compare_conditions, mcnemar_exact,
                                  paired_bootstrap_diff)
from steerkit.tasks.synth import generate

__all__ = [
    "CONCEPT_HINTS", "Condition", "Interval", "Item", "LETTERS", "LetterScorer", "LoadedItems", "McNemar",
    "OpenAnswer", "PAPER_PREFIX",
    "accuracy_table", "bootstrap_ci", "build_prompt", "compare_conditions", "cvbench_scores", "evaluate", "generate",
    "generate_answers", "hint_for", "letter_logprobs", "letter_token_ids", "load_blink", "load_clevr_count",
    "load_cvbench", "load_superclevr_count", "load_whatsup", "mcnemar_exact", "open_item", "paired_bootstrap_diff",
    "paper_split", "parse_letter", "stratified_split", "with_hint",
]

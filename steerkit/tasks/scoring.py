"""Scoring multiple-choice items: the one letter scorer, greedy generation with a robust parser, CV-Bench metrics.

(a) :class:`LetterScorer` turns the logits at the last prompt position into per-letter log-probabilities, the
predicted letter, its correctness, and the greedy first token parsed as a letter. It is the only letter scorer in
steerkit: :func:`letter_logprobs` / :func:`steerkit.tasks.evaluate.evaluate`, the sweep engine
(:mod:`steerkit.sweep`), :func:`steerkit.sweep.engine.naive_protocol` and the organism's evaluation all call it,
so the same logits always give the same answer.

**The letter-spelling rule** (one rule for every tokenizer, :func:`letter_token_ids`):

1. A scorer is built for the letters ``A ..`` up to the largest number of choices it will see (``n_choices``);
   an item with fewer choices uses the same spellings and only its own letters.
2. The candidate spellings are :data:`LETTER_SPELLINGS`: ``"A"``, ``" A"``, ``"(A"``, ``" (A"``, ``"A)"``,
   ``"A."`` (each encoded without special tokens).
3. A spelling counts only if it is **one token for every letter** in use, with a different token per letter.
   A spelling that is several tokens for *some* letter (say ``" E"`` splits while ``" A"`` does not) is dropped
   for *all* letters, so every letter has the same number of spellings and no letter gains probability mass from
   an accident of the vocabulary. A token that an earlier spelling already gave to a letter is not counted twice.
4. If no spelling survives (or the survivors give letters unequal counts), :class:`~steerkit.errors.DataError`
   is raised: score that model by generation (``method="generate"``).
5. A letter's log-probability is the log-sum-exp, over its spellings, of the log-softmax over the **whole
   vocabulary** at the last prompt position; the predicted letter is the argmax over the item's own letters.
6. The greedy answer is the vocabulary argmax at that position, decoded (special tokens skipped) and read by
   :func:`parse_letter`; this reproduces "generate one token greedily, parse the letter" without generating.

(b) :func:`generate_answers`: greedy generation through :func:`steerkit.models.generation.generate_text`, parsed
by :func:`parse_letter` ("(C)", "C", "c.", "Answer: C", "The answer is C", or the text of a choice).

Prompts follow the paper's protocol: :data:`PAPER_PREFIX` + the item's prompt.

Metrics: :func:`cvbench_scores` -- CV-Bench's official acc2D = mean(acc ADE20K, acc COCO), acc3D = acc Omni3D,
overall = (acc2D + acc3D) / 2, with stratified-bootstrap CIs.

Example:
    >>> scorer = LetterScorer.for_items(processor, items)
    >>> rows = scorer.score(last_logits(model, inputs), items)   # pred, correct, logprobs, greedy_* per item
    >>> lp = letter_logprobs(model, processor, items)          # [n_items, max_choices], -inf beyond a row's choices
    >>> preds = generate_answers(model, processor, items)       # list of (text, letter or None)
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from steerkit.errors import DataError
from steerkit.tasks.schema import LETTERS, Item
from steerkit.tasks.stats import Interval, bootstrap_stat

PAPER_PREFIX = "Answer the multiple choice question by only responding the letter of the correct answer. "
LETTER_SPELLINGS = ("{L}", " {L}", "({L}", " ({L}", "{L})", "{L}.")


def build_prompt(item: Item, prefix: str = PAPER_PREFIX) -> str:
    """The text sent to the model for ``item``: ``prefix`` + the item's prompt."""
    return f"{prefix}{item.prompt}"


def item_image(item: Item) -> Any:
    """The item's image as RGB (processors expect 3 channels), or None."""
    if item.image is None:
        return None
    return item.image if item.image.mode == "RGB" else item.image.convert("RGB")


# --------------------------------------------------------------------------------------------- letter tokens
def letter_token_ids(tokenizer: Any, letters: Sequence[str] = LETTERS[:6],
                     spellings: Sequence[str] = LETTER_SPELLINGS) -> dict[str, list[int]]:
    """Token ids that spell each letter as one token ("A", " A", "(A", ...), one id per usable spelling.

    Applies the module's letter-spelling rule: only spellings that are a single token for *every* letter are
    used, so each letter gets the same number of spellings (a tokenizer that happens to have " A" but not " B"
    would otherwise hand "A" extra probability mass). Raises :class:`DataError` when no spelling is a single
    token for all letters (use generation then).

    Example:
        >>> letter_token_ids(tokenizer, "ABCD")["A"]
        [32, 362]
    """
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    found: dict[str, list[int]] = {L: [] for L in letters}
    for sp in spellings:
        ids = [tok.encode(sp.format(L=L), add_special_tokens=False) for L in letters]
        if all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(letters):
            for L, i in zip(letters, ids):
                if i[0] not in found[L] and all(i[0] not in v for v in found.values()):
                    found[L].append(i[0])
    counts = {len(v) for v in found.values()}
    if counts == {0} or len(counts) != 1:
        raise DataError(f"the tokenizer has no spelling among {list(spellings)} that is one token for each of "
                        f"{list(letters)}; use method='generate' for this model")
    return found


def last_logits(model: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """Logits at the last position [batch, vocab] of one plain forward (inputs are left-padded).

    No KV cache is kept, and only the last position goes through the LM head where the model's forward accepts
    ``logits_to_keep``.
    """
    kw: dict[str, Any] = {"use_cache": False}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kw["logits_to_keep"] = 1
    return model(**inputs, **kw).logits[:, -1, :]


class LetterScorer:
    """The one letter scorer: last-position logits -> per-letter log-probs, predicted letter, greedy parse.

    Built once per tokenizer and number of choices (the module docstring states the spelling rule it applies).

    Args:
        tokenizer: a tokenizer, or a processor holding one as ``.tokenizer``.
        n_choices: the largest number of choices among the items it will score (letters ``A ..``).
        spellings: candidate letter spellings (default :data:`LETTER_SPELLINGS`).

    Example:
        >>> scorer = LetterScorer(processor, n_choices=4)
        >>> scorer.score(last_logits(model, inputs), items)[0]["pred"]
        'C'
    """

    def __init__(self, tokenizer: Any, n_choices: int, spellings: Sequence[str] = LETTER_SPELLINGS):
        if not 1 <= n_choices <= len(LETTERS):
            raise DataError(f"n_choices={n_choices}: items need between 1 and {len(LETTERS)} choices")
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.letters: tuple[str, ...] = tuple(LETTERS[:n_choices])
        self.token_ids: dict[str, list[int]] = letter_token_ids(self.tokenizer, self.letters, spellings)
        self._index = [torch.tensor(self.token_ids[L]) for L in self.letters]
        self._decoded: dict[int, str] = {}

    @classmethod
    def for_items(cls, tokenizer: Any, items: Sequence[Item], **kwargs: Any) -> LetterScorer:
        """A scorer for the letters of ``items`` (as many as the item with the most choices)."""
        if not items:
            raise DataError("no items to score: a letter scorer needs at least one item")
        return cls(tokenizer, max(len(it.choices) for it in items), **kwargs)

    def logprobs(self, logits: torch.Tensor) -> torch.Tensor:
        """log p(letter) [rows, n_letters] (float32, on the logits' device) from last-position logits [rows, V]."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        return torch.stack([torch.logsumexp(logp[:, i.to(logp.device)], dim=-1) for i in self._index], dim=-1)

    def decode(self, token: int) -> str:
        """The text of one token (special tokens skipped), cached."""
        if token not in self._decoded:
            self._decoded[token] = self.tokenizer.decode([token], skip_special_tokens=True)
        return self._decoded[token]

    def score(self, logits: torch.Tensor, items: Sequence[Item], repeats: int = 1) -> list[dict[str, Any]]:
        """One dict per row of ``logits`` [B * repeats, V], where row ``r * B + b`` scores item ``b``.

        Keys: ``pred`` (argmax letter over the item's own letters), ``correct``, ``logprobs`` (one float per choice
        letter), ``greedy_text`` (the decoded vocabulary argmax), ``greedy_pred`` (:func:`parse_letter` of it, ""
        when it names no choice) and ``greedy_correct``.
        """
        per_letter = self.logprobs(logits).cpu().numpy()
        greedy = logits.argmax(dim=-1).tolist()
        b = len(items)
        if per_letter.shape[0] != b * repeats:
            raise DataError(f"{per_letter.shape[0]} logit rows for {b} items x {repeats} repeats")
        out = []
        for row in range(b * repeats):
            it = items[row % b]
            if len(it.choices) > len(self.letters):
                raise DataError(f"item {it.id!r} has {len(it.choices)} choices; the scorer was built for "
                                f"{len(self.letters)}: build it with LetterScorer.for_items(tokenizer, all_items)")
            lp = per_letter[row, : len(it.choices)]
            pred = LETTERS[int(np.argmax(lp))]
            text = self.decode(int(greedy[row]))
            g = parse_letter(text, it.choices) or ""
            out.append({"pred": pred, "correct": pred == it.answer, "logprobs": [float(x) for x in lp],
                        "greedy_text": text, "greedy_pred": g, "greedy_correct": g == it.answer})
        return out


def item_inputs(adapter: Any, processor: Any, items: Sequence[Item], prefix: str, device: Any = None) -> Any:
    """Model inputs for a batch of items (prompt = ``prefix`` + item prompt, images when the items have them).

    Raises :class:`DataError` when the batch mixes items with and without images.
    """
    images = [item_image(it) for it in items]
    has = [im is not None for im in images]
    if any(has) and not all(has):
        raise DataError("a batch mixes items with and without images; score them in separate calls")
    return adapter.build_inputs(processor, [build_prompt(it, prefix) for it in items], images if all(has) else None,
                                device=device)


@torch.no_grad()
def letter_logprobs(
    model: Any,
    processor: Any,
    items: Sequence[Item],
    *,
    prefix: str = PAPER_PREFIX,
    batch_size: int = 16,
    scorer: LetterScorer | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Log-probabilities of each item's choice letters as the next token after its prompt.

    Returns an array [n_items, max_choices] of log p(letter | prompt) (log-sum-exp over the letter's spellings,
    normalised over the whole vocabulary); entries beyond an item's own choices are ``-inf``. Inputs come from
    ``adapter_for(model).build_inputs`` (left padding, so position -1 is every row's last prompt token).
    ``scorer``: a :class:`LetterScorer` to reuse (default: one for these items).
    """
    from steerkit.models.adapters import adapter_for

    adapter = adapter_for(model)
    n_max = max(len(it.choices) for it in items) if items else 0
    out = np.full((len(items), n_max), -np.inf)
    if not items:
        return out
    scorer = scorer or LetterScorer(adapter.tokenizer(processor), n_max)
    device = next(model.parameters()).device
    starts = range(0, len(items), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="letter log-probs", leave=False)
    for start in starts:
        chunk = list(items[start:start + batch_size])
        lp = scorer.logprobs(last_logits(model, item_inputs(adapter, processor, chunk, prefix, device))).cpu()
        for r, it in enumerate(chunk):
            out[start + r, : len(it.choices)] = lp[r, : len(it.choices)].numpy()
    return out


# -------------------------------------------------------------------------------------------------- parser
_WORD = r"[A-Za-z0-9]"


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", s.lower())).strip()


def parse_letter(text: str, choices: Sequence[str]) -> str | None:
    """The choice letter a free-form answer names, or None if it names none (or several).

    Accepts "(C)", "C", "c.", "C) 3", "Answer: C", "the answer is (c)", "<answer>C</answer>", and the text of a
    choice ("3", "left", "The red circle."). Only letters within the item's choices count.

    Example:
        >>> parse_letter("Answer: (B) right", ["left", "right"])
        'B'
    """
    valid = LETTERS[:len(choices)]
    t = re.sub(r"</?answer>", " ", text or "").strip()
    if not t:
        return None
    # 1. the answer opens with a letter: "C", "(C)", "C.", "C)", "c." -- lowercase only when clearly a label
    m = re.match(r"^\(?([A-Za-z])\)?(?=$|[\s.,:;)\]!?])", t)
    if m:
        L, label_like = m.group(1), bool(re.match(r"^(\([A-Za-z]\)|[A-Za-z][.):]|[A-Za-z]$)", t))
        if L.upper() in valid and (L.isupper() or label_like):
            if not label_like:  # "A blue circle": an article, not a label, when the rest names another choice
                other = _choice_named(t[1:], choices)
                if other is not None and other != L.upper():
                    return other
            return L.upper()
    # 2. an explicit statement: "Answer: C", "the correct answer is (C)", "Option C"
    m = re.search(r"(?:answer|option|choice)\s*(?:is|:|-)?\s*:?\s*\(?([A-Za-z])\)?(?!" + _WORD + ")", t, re.I)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    # 3. exactly one distinct parenthesised letter anywhere: "... so (B)."
    paren = {x.upper() for x in re.findall(r"\(([A-Za-z])\)", t)} & set(valid)
    if len(paren) == 1:
        return paren.pop()
    # 4. the text of a choice: exact, else the only choice mentioned as a whole phrase
    return _choice_named(t, choices)


def _choice_named(t: str, choices: Sequence[str]) -> str | None:
    """The letter of the one choice whose text ``t`` is or mentions (whole phrase), else None."""
    valid = LETTERS[:len(choices)]
    nt = _norm(t)
    normed = [_norm(c) for c in choices]
    exact = [i for i, c in enumerate(normed) if c and c == nt]
    if len(exact) == 1:
        return valid[exact[0]]
    hits = [i for i, c in enumerate(normed) if c and re.search(rf"(?<!\w){re.escape(c)}(?!\w)", nt)]
    # drop a hit that is part of a longer hit ("left" inside "left of")
    hits = [i for i in hits if not any(j != i and normed[i] in normed[j] and normed[j] != normed[i] for j in hits)]
    if len(hits) == 1:
        return valid[hits[0]]
    return None


def generate_answers(
    model: Any,
    processor: Any,
    items: Sequence[Item],
    *,
    prefix: str = PAPER_PREFIX,
    batch_size: int = 16,
    max_new_tokens: int = 8,
) -> list[tuple[str, str | None]]:
    """Greedy answers: ``(generated text, parsed letter or None)`` per item."""
    from steerkit.models.generation import generate_text

    images = [item_image(it) for it in items]
    has = [im is not None for im in images]
    if any(has) and not all(has):
        raise DataError("items mix with and without images; generate them in separate calls")
    texts = generate_text(model, processor, [build_prompt(it, prefix) for it in items],
                          images=images if all(has) else None, max_new_tokens=max_new_tokens, temperature=0.0,
                          batch_size=batch_size)
    return [(t, parse_letter(t, it.choices)) for t, it in zip(texts, items)]



# ------------------------------------------------------------------------------------------------- metrics
def cvbench_scores(results: pd.DataFrame, *, by: Sequence[str] = ("condition",), n_boot: int = 2000,
                   level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """CV-Bench's official scores per group: acc per source, acc2D, acc3D, overall (each with a CI).

    acc2D = mean(acc ADE20K, acc COCO) (a mean of two source accuracies, not pooled), acc3D = acc Omni3D,
    overall = (acc2D + acc3D) / 2. CIs resample items within each source (stratified bootstrap). Groups that lack a
    source get NaN for the metrics that need it.
    """
    rows = []
    groups = results.groupby(list(by), sort=True) if by else [((), results)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key))
        src = g["source"].to_numpy()
        corr = g["correct"].astype(float).to_numpy()
        masks = {s: src == s for s in ("ADE20K", "COCO", "Omni3D")}

        def stat_of(name: str):
            def acc(idx: np.ndarray, s: str) -> np.ndarray:
                m = masks[s][idx]
                return (corr[idx] * m).sum(axis=1) / m.sum(axis=1)

            if name in masks:
                return lambda idx: acc(idx, name)
            if name == "acc2D":
                return lambda idx: (acc(idx, "ADE20K") + acc(idx, "COCO")) / 2
            if name == "acc3D":
                return lambda idx: acc(idx, "Omni3D")
            return lambda idx: ((acc(idx, "ADE20K") + acc(idx, "COCO")) / 2 + acc(idx, "Omni3D")) / 2

        needs = {"ADE20K": ["ADE20K"], "COCO": ["COCO"], "Omni3D": ["Omni3D"], "acc2D": ["ADE20K", "COCO"],
                 "acc3D": ["Omni3D"], "overall": ["ADE20K", "COCO", "Omni3D"]}
        for name, srcs in needs.items():
            col = f"acc_{name}" if name in masks else name
            if all(masks[s].any() for s in srcs):
                iv: Interval = bootstrap_stat(len(g), stat_of(name), n_boot=n_boot, level=level, seed=seed,
                                              strata=src)
                row.update({col: iv.value, f"{col}_lo": iv.lo, f"{col}_hi": iv.hi})
            else:
                row.update({col: np.nan, f"{col}_lo": np.nan, f"{col}_hi": np.nan})
        row["n"] = len(g)
        rows.append(row)
    return pd.DataFrame(rows)

"""Three ways to turn a concept corpus's activations into a :class:`SteeringVector`.

* :func:`mean_shift` — per layer, mean output over anchor tokens minus mean over the other real tokens, pooled
  over the concept's sentences. Raw (not normalised), as added in arXiv 2505.14071.
* :func:`linear_probe` — per layer, logistic regression anchor-vs-other; held-out accuracy on a split by sentence;
  the vector is the unit-normalised weight (in the raw activation basis).
* :func:`sae_vector` — sae-lens SAEs: features ranked by mean activation on anchor tokens minus other tokens; the
  vector is the unit-normalised mean of the chosen features' decoder rows; feature ids are recorded.

:func:`extract` runs one activation pass and any of the methods; :func:`extract_concepts` loops over concepts
and returns a timing table too.

Example:
    >>> vecs = extract(lm, tok, load_corpus("spatial_relation"), methods=("mean_shift", "probe"))
    >>> vecs["probe"].extra["probe"][0]["test_accuracy"]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from steerkit.errors import DataError, VectorMismatchError
from steerkit.vectors.activations import Activations, collect_activations, key_anchors
from steerkit.vectors.corpus import load_corpus
from steerkit.vectors.vector import SteeringVector

METHODS: tuple[str, ...] = ("mean_shift", "probe", "sae")

#: Gemma Scope residual-stream SAEs for gemma-2-2b (hook ``blocks.{l}.hook_resid_post`` = output of layer l).
GEMMA_SCOPE_RELEASE = "gemma-scope-2b-pt-res-canonical"


def _vector(acts: Activations, vectors: Mapping[int, torch.Tensor], method: str, extra: dict[str, Any]) -> SteeringVector:
    extra = {**extra, "prepended_bos": acts.prepended_bos}
    return SteeringVector(vectors, method=method, concept=acts.concept, n_layers=acts.n_layers,
                          source_model=acts.source_model, hidden_size=acts.hidden_size,
                          corpus_hash=acts.corpus_hash, extra=extra)


def _need_both(acts: Activations) -> None:
    n_anchor = int(acts.is_anchor.sum())
    if n_anchor == 0 or n_anchor == len(acts.is_anchor):
        raise DataError(f"concept {acts.concept!r}: {n_anchor} anchor tokens of {len(acts.is_anchor)}; both anchor "
                        "and other tokens are needed (check the corpus spans)")


# ------------------------------------------------------------------------------------------------ MeanShift
def mean_shift(acts: Activations) -> SteeringVector:
    """MeanShift vector per collected layer: mean(anchor tokens) - mean(other real tokens). Not normalised.

    Example:
        >>> v = mean_shift(collect_activations(lm, tok, sents))
    """
    _need_both(acts)
    a = acts.is_anchor
    diff = acts.hidden[:, a].mean(dim=1) - acts.hidden[:, ~a].mean(dim=1)
    return _vector(acts, {l: diff[i] for i, l in enumerate(acts.layers)}, "mean_shift",
                   {"n_anchor_tokens": int(a.sum()), "n_other_tokens": int((~a).sum()),
                    "n_sentences": acts.n_sentences})


# ------------------------------------------------------------------------------------------------ probe
def sentence_split(n_sentences: int, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sentence ids for train and test (disjoint, seeded), so no sentence's tokens are on both sides."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n_sentences)
    n_test = max(1, int(round(n_sentences * test_fraction)))
    if n_test >= n_sentences:
        raise DataError(f"{n_sentences} sentences cannot be split into train and test; use more sentences")
    return np.sort(order[n_test:]), np.sort(order[:n_test])


class AnchorWordSplit(tuple):
    """``(train_ids, test_ids)`` of an anchor-word split, with what the split held out and dropped.

    Unpacks like the plain pair (``train, test = split``); the attributes say how the split was made.

    Attributes:
        train: sentence ids whose anchors are all training anchors (sorted).
        test: sentence ids whose anchors are all held-out anchors (sorted).
        dropped: sentence ids with both a held-out and a training anchor, in neither side (sorted).
        held_out: the held-out anchor strings (lower-cased), sorted.
    """

    train: np.ndarray
    test: np.ndarray
    dropped: np.ndarray
    held_out: tuple[str, ...]

    def __new__(cls, train: np.ndarray, test: np.ndarray, dropped: np.ndarray,
                held_out: Sequence[str]) -> AnchorWordSplit:
        self = super().__new__(cls, (train, test))
        self.train, self.test, self.dropped, self.held_out = train, test, dropped, tuple(sorted(held_out))
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # tuple subclasses pickle by __new__ arguments
        return AnchorWordSplit, (self.train, self.test, self.dropped, self.held_out)

    @property
    def n_dropped(self) -> int:
        """How many sentences mixed held-out and training anchors and were left out of both sides."""
        return len(self.dropped)


def anchor_word_split(keys: Sequence[str], test_fraction: float = 0.25, seed: int = 0) -> AnchorWordSplit:
    """Train and test sentence ids such that no anchor string of a test sentence is an anchor of a training one.

    ``keys`` are per-sentence anchor keys (:attr:`Activations.anchor_keys`: lower-cased anchors joined by "|").
    Anchor strings are held out one at a time until the test sentences (all anchors held out) make up at least
    ``test_fraction`` of the kept sentences; training sentences have no held-out anchor; a sentence with both
    kinds is dropped (``split.dropped``). The first held-out anchor is the seed's pick; after it, the anchor that
    leaves the fewest dropped sentences comes next, ties going to the seed's order, so most concepts lose few
    sentences and each seed gives one fixed split. Disjointness is of whole anchor strings: a held-out
    "bigger" may still share a word with a training "bigger than".

    Raises:
        DataError: ``test_fraction`` outside (0, 1), a sentence without anchors, fewer than two distinct anchors,
            or a split that leaves train or test empty.

    Example:
        >>> train, test = anchor_word_split(["left", "right", "above", "under|left"], 0.25, seed=0)
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    per_sentence = [key_anchors(k) for k in keys]
    empty = [i for i, a in enumerate(per_sentence) if not a]
    if empty:
        raise DataError(f"sentence(s) {empty[:5]} have no anchor key; build the keys with collect_activations "
                        "from validated corpus sentences")
    vocab = sorted(set().union(*per_sentence)) if per_sentence else []
    if len(vocab) < 2:
        raise DataError(f"an anchor-word split needs at least two different anchor strings, got {vocab}; "
                        "use split='sentence' for this corpus")
    rank = {a: r for r, a in enumerate(np.random.default_rng(seed).permutation(vocab).tolist())}
    held: set[str] = set()

    def sides(held_out: set[str]) -> tuple[int, int, int]:
        n_test = sum(a <= held_out for a in per_sentence)
        n_train = sum(not (a & held_out) for a in per_sentence)
        return n_train, n_test, len(per_sentence) - n_train - n_test

    n_train, n_test = len(per_sentence), 0
    while n_test < test_fraction * (n_train + n_test) and len(held) < len(vocab):
        # Fewest dropped sentences first; the seeded rank breaks ties (and picks the first anchor).
        best = min((a for a in vocab if a not in held),
                   key=lambda a: (sides(held | {a})[2] if held else 0, rank[a]))
        held.add(best)
        n_train, n_test, _ = sides(held)
    train = np.array([i for i, a in enumerate(per_sentence) if not (a & held)], dtype=np.int64)
    test = np.array([i for i, a in enumerate(per_sentence) if a <= held], dtype=np.int64)
    dropped = np.array(sorted(set(range(len(per_sentence))) - set(train.tolist()) - set(test.tolist())),
                       dtype=np.int64)
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"the anchor-word split of {len(keys)} sentences ({len(vocab)} anchor strings) left "
                        f"{len(train)} training and {len(test)} test sentences ({len(dropped)} dropped); use a "
                        "smaller test_fraction, a corpus with more distinct anchors, or split='sentence'")
    return AnchorWordSplit(train, test, dropped, held)


def linear_probe(acts: Activations, test_fraction: float = 0.25, seed: int = 0, C: float = 1.0,
                 max_iter: int = 500, progress: bool = True, split: str = "sentence") -> SteeringVector:
    """Logistic-regression probe (anchor vs other token) per layer; vector = unit-normalised weight.

    ``split="sentence"`` holds out random sentences; ``split="anchor_word"`` holds out anchor strings
    (:func:`anchor_word_split`), so no test anchor was an anchor in training; sentences that mix held-out and
    training anchors are dropped, and their count goes to every record (``n_dropped_sentences``) and to
    ``vector.extra`` with the held-out anchors.

    Features are standardised for the fit (LLM residual streams have a few huge dimensions) and the weight is
    mapped back to the raw activation basis before normalising, so ``h @ v`` ranks tokens like the probe does.
    Classes are balanced by weight. Held-out metrics per layer go to ``vector.extra["probe"]`` (a list of
    records: layer, test_accuracy, balanced_accuracy, majority_baseline, train_accuracy, token and sentence counts).

    Example:
        >>> v = linear_probe(acts)
        >>> [r["test_accuracy"] for r in v.extra["probe"]]
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    _need_both(acts)
    if split == "sentence":
        train_s, test_s = sentence_split(acts.n_sentences, test_fraction, seed)
        split_extra: dict[str, Any] = {"n_dropped_sentences": 0, "held_out_anchors": []}
    elif split == "anchor_word":
        if acts.anchor_keys is None:
            raise DataError("these activations carry no anchor_keys; collect them with collect_activations")
        words = anchor_word_split(acts.anchor_keys, test_fraction, seed)
        train_s, test_s = words.train, words.test
        split_extra = {"n_dropped_sentences": words.n_dropped, "held_out_anchors": list(words.held_out)}
    else:
        raise DataError(f"split={split!r}: use 'sentence' or 'anchor_word'")
    counts = {"n_train_sentences": len(train_s), "n_test_sentences": len(test_s),
              "n_dropped_sentences": split_extra["n_dropped_sentences"]}
    sent = acts.sentence.numpy()
    tr, te = np.isin(sent, train_s), np.isin(sent, test_s)
    y = acts.is_anchor.numpy().astype(np.int64)
    if len(set(y[tr])) < 2 or len(set(y[te])) < 2:
        raise DataError(f"concept {acts.concept!r}: the train/test split lacks a class; use more sentences")
    majority = max(y[te].mean(), 1 - y[te].mean())
    vectors, records = {}, []
    for i, layer in enumerate(tqdm(acts.layers, desc=f"probe {acts.concept}", disable=not progress, leave=False)):
        x = acts.hidden[i].double().numpy()
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        clf = LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced")
        clf.fit((x[tr] - mu) / sd, y[tr])
        pred = clf.predict((x[te] - mu) / sd)
        w = torch.from_numpy(clf.coef_[0] / sd).float()
        vectors[layer] = w / w.norm().clamp_min(1e-12)
        records.append({
            "layer": layer,
            "test_accuracy": float((pred == y[te]).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y[te], pred)),
            "majority_baseline": float(majority),
            "train_accuracy": float((clf.predict((x[tr] - mu) / sd) == y[tr]).mean()),
            "n_train_tokens": int(tr.sum()),
            "n_test_tokens": int(te.sum()),
            **counts,
            "split": split,
        })
    return _vector(acts, vectors, "probe", {"probe": records, "split": split, "test_fraction": test_fraction,
                                            "seed": seed, "C": C, "n_sentences": acts.n_sentences, **split_extra})


# ------------------------------------------------------------------------------------------------ SAE
def gemma_scope_sae_id(layer: int, width: str = "16k") -> tuple[str, str]:
    """``(release, sae_id)`` of the Gemma Scope residual SAE for gemma-2-2b at ``layer``.

    Example:
        >>> gemma_scope_sae_id(12)
        ('gemma-scope-2b-pt-res-canonical', 'layer_12/width_16k/canonical')
    """
    return GEMMA_SCOPE_RELEASE, f"layer_{layer}/width_{width}/canonical"


def load_sae(spec: Any, device: str = "cpu") -> Any:
    """An sae-lens ``SAE`` from a spec: an SAE (returned as is), a local folder (``SAE.load_from_disk``) or a
    ``(release, sae_id)`` pair (``SAE.from_pretrained``; needs the hub).

    Example:
        >>> sae = load_sae(gemma_scope_sae_id(12))
    """
    from sae_lens import SAE

    if isinstance(spec, SAE):
        return spec
    if isinstance(spec, (str, Path)) and Path(spec).is_dir():
        return SAE.load_from_disk(str(spec), device=device)
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        release, sae_id = spec
        loaded = SAE.from_pretrained(release, sae_id, device=device)
        return loaded[0] if isinstance(loaded, tuple) else loaded  # sae-lens < 6 returned (sae, cfg, sparsity)
    raise DataError(f"cannot load an SAE from {spec!r}: give an SAE, a folder saved with sae.save_model(), or a "
                    "(release, sae_id) pair such as gemma_scope_sae_id(12)")


@torch.no_grad()
def rank_sae_features(sae: Any, hidden: torch.Tensor, is_anchor: torch.Tensor,
                      batch_size: int = 4096) -> torch.Tensor:
    """Per SAE feature: mean activation on anchor tokens minus mean activation on the other tokens."""
    dtype = sae.W_enc.dtype
    device = sae.W_enc.device
    sums = torch.zeros(2, sae.W_enc.shape[1], dtype=torch.float64)
    for start in range(0, len(hidden), batch_size):
        feats = sae.encode(hidden[start:start + batch_size].to(device=device, dtype=dtype)).double().cpu()
        a = is_anchor[start:start + batch_size]
        sums[0] += feats[a].sum(0)
        sums[1] += feats[~a].sum(0)
    n_a, n_o = int(is_anchor.sum()), int((~is_anchor).sum())
    return (sums[0] / max(n_a, 1) - sums[1] / max(n_o, 1)).float()


def sae_vector(acts: Activations, saes: Mapping[int, Any], top_k: int = 8, progress: bool = True) -> SteeringVector:
    """SAE vector per layer in ``saes`` (``{layer: SAE | folder | (release, sae_id)}``).

    The SAE must read the output of decoder layer ``l`` (a residual-stream ``hook_resid_post`` SAE) of a model of
    the same width. Chosen feature ids and scores go to ``vector.extra["sae"]``.

    Example:
        >>> v = sae_vector(acts, {12: gemma_scope_sae_id(12)}, top_k=5)
        >>> v.extra["sae"][0]["feature_ids"]
    """
    _need_both(acts)
    vectors, records = {}, []
    for layer, spec in tqdm(sorted(saes.items()), desc=f"sae {acts.concept}", disable=not progress, leave=False):
        sae = load_sae(spec)
        d_in = int(sae.W_dec.shape[1])
        if d_in != acts.hidden_size:
            raise VectorMismatchError(f"the SAE for layer {layer} reads width {d_in} but the model's hidden size is "
                                      f"{acts.hidden_size}; use SAEs trained on this model's residual stream")
        scores = rank_sae_features(sae, acts.layer(layer), acts.is_anchor)
        k = min(top_k, len(scores))
        top = torch.topk(scores, k)
        direction = sae.W_dec[top.indices].detach().float().cpu().mean(0)
        vectors[layer] = direction / direction.norm().clamp_min(1e-12)
        cfg = getattr(sae, "cfg", None)
        meta = getattr(cfg, "metadata", None)
        records.append({
            "layer": int(layer),
            "feature_ids": [int(i) for i in top.indices],
            "scores": [float(s) for s in top.values],
            "d_sae": int(sae.W_dec.shape[0]),
            "hook_name": str(getattr(meta, "hook_name", "") or getattr(cfg, "hook_name", "") or ""),
            "spec": list(spec) if isinstance(spec, (tuple, list)) else (str(spec) if isinstance(spec, (str, Path))
                                                                         else type(spec).__name__),
        })
    return _vector(acts, vectors, "sae", {"sae": records, "top_k": top_k})


# ------------------------------------------------------------------------------------------------ drivers
def extract(
    model: torch.nn.Module,
    tokenizer: Any,
    sentences: Sequence[Any],
    methods: Sequence[str] = ("mean_shift", "probe"),
    *,
    saes: Mapping[int, Any] | None = None,
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    top_k: int = 8,
    test_fraction: float = 0.25,
    probe_split: str = "sentence",
    seed: int = 0,
    source_model: str | None = None,
    progress: bool = True,
) -> dict[str, SteeringVector]:
    """One activation pass over ``sentences`` and the requested ``methods``; returns ``{method: vector}``.

    Example:
        >>> vecs = extract(lm, tok, load_corpus("counting"), methods=("mean_shift", "probe"))
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise DataError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if "sae" in methods and not saes:
        raise DataError("method 'sae' needs saes={layer: SAE | folder | (release, sae_id)}")
    acts = collect_activations(model, tokenizer, sentences, layers=layers, batch_size=batch_size,
                               source_model=source_model, progress=progress)
    out: dict[str, SteeringVector] = {}
    for method in methods:
        if method == "mean_shift":
            out[method] = mean_shift(acts)
        elif method == "probe":
            out[method] = linear_probe(acts, test_fraction=test_fraction, seed=seed, progress=progress,
                                       split=probe_split)
        else:
            out[method] = sae_vector(acts, saes or {}, top_k=top_k, progress=progress)
    return out


def extract_concepts(
    model: torch.nn.Module,
    tokenizer: Any,
    concepts: Sequence[str],
    corpus_dir: str | Path | None = None,
    methods: Sequence[str] = ("mean_shift", "probe"),
    *,
    n: int | None = None,
    out_dir: str | Path | None = None,
    **kwargs: Any,
) -> tuple[dict[tuple[str, str], SteeringVector], Any]:
    """Vectors for several concepts; returns ``({(method, concept): vector}, timing DataFrame)``.

    With ``out_dir``, each vector is saved to ``<out_dir>/<concept>/<method>/``.

    Example:
        >>> vecs, timing = extract_concepts(lm, tok, ["spatial_relation", "counting"], n=100)
    """
    import pandas as pd

    vectors: dict[tuple[str, str], SteeringVector] = {}
    rows = []
    for concept in tqdm(list(concepts), desc="concepts", disable=not kwargs.get("progress", True)):
        sentences = load_corpus(concept, corpus_dir, n=n)
        t0 = time.perf_counter()
        got = extract(model, tokenizer, sentences, methods, **kwargs)
        seconds = time.perf_counter() - t0
        for method, vec in got.items():
            vectors[(method, concept)] = vec
            if out_dir is not None:
                vec.save(Path(out_dir) / concept / method)
        rows.append({"concept": concept, "n_sentences": len(sentences), "methods": ",".join(methods),
                     "seconds": seconds})
    return vectors, pd.DataFrame(rows)


def probe_accuracy_frame(vectors: Mapping[Any, SteeringVector]) -> Any:
    """Tidy DataFrame of the probes' held-out metrics: one row per (concept, layer).

    Example:
        >>> probe_accuracy_frame(vecs).pivot(index="layer", columns="concept", values="test_accuracy")
    """
    import pandas as pd

    rows = []
    for vec in vectors.values():
        for rec in vec.extra.get("probe", []):
            rows.append({"concept": vec.concept, "source_model": vec.source_model, **rec})
    if not rows:
        raise DataError("none of the vectors is a probe vector (method 'probe')")
    return pd.DataFrame(rows)

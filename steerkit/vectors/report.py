"""Concept vectors for many concepts at once, with the tables and figures that describe them.

:func:`concept_report` extracts MeanShift and probe vectors (optionally SAE) for each concept, saves them, and
returns a :class:`ConceptReport` with tidy DataFrames (probe held-out metrics per layer, timings) persisted as
parquet, cosine-similarity matrices, plotly figures and a markdown rendering for docs.

Example:
    >>> lm, tok = load_text_model("smollm2")
    >>> rep = concept_report(lm, tok, CONCEPTS, out_dir="outputs/vectors/smollm2")
    >>> rep.probe.pivot(index="layer", columns="concept", values="balanced_accuracy")
    >>> rep.similarity_figure("mean_shift").show()
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from steerkit.vectors.methods import extract_concepts, probe_accuracy_frame
from steerkit.vectors.vector import SteeringVector, cosine_similarity_frame


@dataclass
class ConceptReport:
    """Vectors of several concepts and their descriptive tables.

    Attributes:
        vectors: ``{(method, concept): SteeringVector}``.
        probe: one row per (concept, layer): test_accuracy, balanced_accuracy, majority_baseline, ...
        timing: one row per concept: sentences and seconds (activations + all methods).
        load_seconds: time to load the model (when measured by the caller).
    """

    vectors: dict[tuple[str, str], SteeringVector]
    probe: pd.DataFrame
    timing: pd.DataFrame
    load_seconds: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def concepts(self) -> list[str]:
        """Concepts in extraction order."""
        return list(dict.fromkeys(c for _, c in self.vectors))

    @property
    def n_layers(self) -> int:
        """Decoder layers of the source model."""
        return next(iter(self.vectors.values())).n_layers

    def similarity(self, method: str = "mean_shift", layer: int | None = None) -> pd.DataFrame:
        """Concept x concept cosine similarity of ``method`` vectors at ``layer`` (default: the middle layer)."""
        layer = self.n_layers // 2 if layer is None else layer
        return cosine_similarity_frame({c: self.vectors[(method, c)] for c in self.concepts
                                        if (method, c) in self.vectors}, layer)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``probe.parquet``, ``timing.parquet`` and ``similarity_<method>.parquet`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.probe.to_parquet(out / "probe.parquet", index=False)
        self.timing.to_parquet(out / "timing.parquet", index=False)
        for method in sorted({m for m, _ in self.vectors}):
            self.similarity(method).to_parquet(out / f"similarity_{method}.parquet")
        return out

    # ------------------------------------------------------------------------------------------ figures
    def probe_figure(self, metric: str = "balanced_accuracy") -> Any:
        """plotly line chart: held-out probe ``metric`` by layer, one line per concept."""
        import plotly.express as px

        split = ", ".join(sorted(self.probe["split"].unique())) if "split" in self.probe else "sentence"
        fig = px.line(self.probe, x="layer", y=metric, color="concept", markers=True,
                      title=f"Linear probe held-out {metric.replace('_', ' ')} by layer (split: {split})")
        fig.add_hline(y=0.5 if metric == "balanced_accuracy" else float(self.probe["majority_baseline"].mean()),
                      line_dash="dot", annotation_text="chance")
        return fig

    def similarity_figure(self, method: str = "mean_shift", layer: int | None = None) -> Any:
        """plotly heatmap of the concept cosine-similarity matrix."""
        import plotly.express as px

        layer = self.n_layers // 2 if layer is None else layer
        sim = self.similarity(method, layer)
        return px.imshow(sim, text_auto=".2f", zmin=-1, zmax=1, color_continuous_scale="RdBu_r",
                         title=f"Cosine similarity of {method} concept vectors at layer {layer}")

    # ------------------------------------------------------------------------------------------ markdown
    def probe_markdown(self, metric: str = "balanced_accuracy", layers: Sequence[int] | None = None) -> str:
        """Markdown table: rows = layers, columns = concepts, cells = held-out ``metric``."""
        table = self.probe.pivot(index="layer", columns="concept", values=metric)[self.concepts]
        if layers is not None:
            table = table.loc[list(layers)]
        return markdown_table(table, "{:.3f}")

    def split_markdown(self) -> str:
        """Markdown table: per concept, the probe's train, test and dropped sentences (and test tokens)."""
        cols = ["n_train_sentences", "n_test_sentences", "n_dropped_sentences", "n_test_tokens"]
        table = self.probe.groupby("concept", sort=False)[cols].first().loc[self.concepts]
        return markdown_table(table.astype(int), "{}")

    def similarity_markdown(self, method: str = "mean_shift", layer: int | None = None) -> str:
        """Markdown table of the cosine-similarity matrix."""
        return markdown_table(self.similarity(method, layer), "{:+.2f}")


def markdown_table(frame: pd.DataFrame, fmt: str = "{}") -> str:
    """A DataFrame as a GitHub markdown table (index as first column), numbers formatted with ``fmt``."""
    head = [str(frame.index.name or ""), *map(str, frame.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for idx, row in frame.iterrows():
        cells = [fmt.format(v) if isinstance(v, (int, float)) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def concept_report(
    model: Any,
    tokenizer: Any,
    concepts: Sequence[str],
    corpus_dir: str | Path | None = None,
    methods: Sequence[str] = ("mean_shift", "probe"),
    *,
    n: int | None = None,
    out_dir: str | Path | None = None,
    load_seconds: float | None = None,
    **kwargs: Any,
) -> ConceptReport:
    """Extract ``methods`` vectors for ``concepts``; with ``out_dir``, save vectors (``<concept>/<method>/``) and
    the tables (parquet). Keyword arguments go to :func:`steerkit.vectors.methods.extract`.

    Example:
        >>> rep = concept_report(lm, tok, ["spatial_relation", "counting"], n=100, out_dir="outputs/v")
    """
    t0 = time.perf_counter()
    vectors, timing = extract_concepts(model, tokenizer, concepts, corpus_dir, methods, n=n,
                                       out_dir=None if out_dir is None else Path(out_dir) / "vectors", **kwargs)
    probe = probe_accuracy_frame(vectors) if "probe" in methods else pd.DataFrame()
    rep = ConceptReport(vectors, probe, timing, load_seconds,
                        {"total_seconds": time.perf_counter() - t0, "methods": list(methods), "n": n})
    if out_dir is not None:
        rep.save(out_dir)
    return rep


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m steerkit.vectors.report --model smollm2 --out outputs/vectors/smollm2 [--n N] [--threads T]
    [--probe-split anchor_word] [--seed S]``:
    extract MeanShift + probe vectors for every concept, save them with parquet tables and a ``report.md``."""
    import argparse
    import os

    import torch

    from steerkit.models.textlm import load_text_model
    from steerkit.vectors.corpus import available_concepts

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--corpus-dir", default=None)
    ap.add_argument("--concepts", nargs="*", default=None)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="outputs/vectors")
    ap.add_argument("--layers", type=int, nargs="*", default=None, help="decoder layers (default: all)")
    ap.add_argument("--probe-split", default="sentence", choices=["sentence", "anchor_word"])
    ap.add_argument("--test-fraction", type=float, default=0.25, help="probe test share of the kept sentences")
    ap.add_argument("--seed", type=int, default=0, help="seed of the probe's train/test split")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tok = load_text_model(args.model)
    load_s = time.perf_counter() - t0
    concepts = args.concepts or available_concepts(args.corpus_dir)
    rep = concept_report(model, tok, concepts, args.corpus_dir, n=args.n, out_dir=args.out, load_seconds=load_s,
                         batch_size=args.batch_size, layers=args.layers, probe_split=args.probe_split,
                         test_fraction=args.test_fraction, seed=args.seed)
    mid = rep.n_layers // 2
    probe_extra = next(v.extra for (m, _), v in rep.vectors.items() if m == "probe")
    text = [f"model: {args.model} ({rep.n_layers} layers), probe split: {args.probe_split}, "
            f"threads={torch.get_num_threads()}, "
            f"cpu_count={os.cpu_count()}, load {load_s:.1f} s, extraction total {rep.meta['total_seconds']:.1f} s",
            "", "## timing", markdown_table(rep.timing.set_index("concept"), "{:.1f}"),
            "", f"## probe split ({args.probe_split}, test_fraction {probe_extra['test_fraction']}, "
                f"seed {probe_extra['seed']})", rep.split_markdown(),
            "", "## probe balanced accuracy", rep.probe_markdown("balanced_accuracy"),
            "", "## probe test accuracy", rep.probe_markdown("test_accuracy"),
            "", "## majority baseline", rep.probe_markdown("majority_baseline",
                                                          layers=[int(rep.probe["layer"].min())]),
            *(["", f"## mean_shift cosine, layer {mid}", rep.similarity_markdown("mean_shift"),
               "", f"## probe cosine, layer {mid}", rep.similarity_markdown("probe")]
              if mid in next(iter(rep.vectors.values())) else [])]
    Path(args.out, "report.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()

"""Build notebooks/04_sweep.ipynb (run: .venv/bin/python notebooks/_make_04_sweep.py)."""

from __future__ import annotations

from pathlib import Path

import nbformat

md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell

cells = [
    md("""# 04 — Steering sweep: which layer, which strength, which tokens?

A textual steering vector helps only at some layers and strengths, and only on some token positions (image tokens,
text tokens, or both). This notebook runs the paper's grid on the organism: every item under every
(concept, method, layer, strength, scope) cell, plus the unsteered baseline and a **prompting baseline** (the concept
as a hint in the prompt). The engine computes the vision tower and the layers below the steered one once per item
batch and replays only the layers above it, for all strengths in one batched forward; answers are scored by the
log-likelihood of the answer letter. Results land in a resumable store: rerunning a cell is free.

We then pick the best cell per task and concept **on the train split** and confirm it **on the test split**
(paired bootstrap CIs), draw layer x strength heatmaps, and open the interactive app (static under papermill)."""),
    code("""model = "steerkit/organism"         # any load_model() name
text_model = "steerkit/organism-text"  # where the vectors come from
corpus_dir = "data/concepts/organism"
concepts = ["counting", "spatial_relation"]
methods = ["mean_shift"]
n_sentences = 60
tasks = ["Count", "Relation"]
n_items = 16                          # per task
layers = [0, 1, 2]
alphas = [0.5, 1.0, 2.0, 4.0]
scopes = ["image", "text", "both"]
batch_size = 12
seed = 0""", metadata={"tags": ["parameters"]}),
    code("""import os
from pathlib import Path

import torch

from steerkit.models.loading import load_model
from steerkit.models.organism import world_items
from steerkit.models.textlm import load_text_model
from steerkit.sweep import sweep
from steerkit.sweep.report import best_cells, heatmaps, paper_table, write_report
from steerkit.tasks.splits import stratified_split
from steerkit.vectors import extract_concepts
from steerkit.widgets import SweepApp

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
out = Path(os.environ.get("STEERKIT_OUT", "outputs/04_sweep"))
out.mkdir(parents=True, exist_ok=True)"""),
    md("## Model, items (train/test split), and text vectors from the text-only LM"),
    code("""mllm, processor = load_model(model)
items = stratified_split([it for t in tasks for it in world_items(t, n_items, seed=seed)], test_frac=0.5, seed=seed)
lm, tok = load_text_model(text_model)
vectors, timing = extract_concepts(lm, tok, concepts, corpus_dir, methods=methods, n=n_sentences, progress=False)
vectors = {(m, c): v for (c, m), v in vectors.items()}
print(len(items), "items;", {k: v.norms[layers[0]] for k, v in vectors.items()})"""),
    md("""## The sweep
One call; rows are persisted as they finish under a folder named by the configuration's hash."""),
    code("""df = sweep(mllm, processor, items, vectors, layers, alphas, scopes, out_dir=out / "sweeps", model_name=model,
           batch_size=batch_size, progress=False)
print(df.attrs["run_dir"], df.attrs["mode"], len(df), "rows")
df.head()"""),
    md("Rerunning the same configuration reads the store instead of recomputing:"),
    code("""import time
t = time.perf_counter()
again = sweep(mllm, processor, items, vectors, layers, alphas, scopes, out_dir=out / "sweeps", model_name=model,
              batch_size=batch_size, progress=False)
assert again.equals(df)
print(f"resumed in {time.perf_counter() - t:.2f} s")"""),
    md("""## Best cells: selected on train, confirmed on test
Each cell reads like the paper's "+7.3% (L5@1)": accuracy change vs the unsteered baseline at layer 5, strength 1.
The test column shows the same cell's change on held-out items with a 95% paired-bootstrap interval."""),
    code("""best = best_cells(df, n_boot=1000)
best[["task", "concept", "method", "scope", "label_select", "label_confirm", "lo_confirm", "hi_confirm",
      "prompt_delta_confirm"]]"""),
    code("""paper_table(best, method=methods[0], scope="image")"""),
    md("## Heatmaps: accuracy change (points) by layer x strength, per task and scope"),
    code("""fig = heatmaps(df, method=methods[0], concept=concepts[0], split="train")
fig.write_html(out / "heatmaps.html", include_plotlyjs="cdn")
fig"""),
    code("""paths = write_report(df, out / "report", n_boot=500)
sorted(p.name for p in paths.values())"""),
    md("""## Explore interactively
In JupyterLab this is a live app: pick model/concept/method/scope, move the layer and strength sliders, and browse
the items whose answer flipped. Under papermill it renders the same view as static figures."""),
    code("""app = SweepApp({model: df}, items=items)
app.select(layer=layers[-1], alpha=alphas[-1])
app.show()"""),
]

nb = nbformat.v4.new_notebook()
nb.cells = cells
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
nbformat.write(nb, Path(__file__).with_name("04_sweep.ipynb"))

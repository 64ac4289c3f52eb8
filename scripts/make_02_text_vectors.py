"""Build notebooks/02_text_vectors.ipynb (run: .venv/bin/python scripts/make_02_text_vectors.py)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

cells = [
    new_markdown_cell(
        "# 02 — Text steering vectors\n\n"
        "A visual concept (spatial relation, counting, ...) has a direction in a **text-only** LLM's residual stream. "
        "We find it from sentences whose concept words are marked by character spans: per decoder layer, "
        "**MeanShift** (mean over anchor tokens minus mean over the other tokens) and a **linear probe** "
        "(anchor vs other token, held-out accuracy on a split by sentence). The vectors are saved as "
        "`SteeringVector`s (safetensors + JSON) so that `steerkit.steer` can add them to an MLLM's decoder.\n\n"
        "Default: the organism's text LM and its own-vocabulary concept corpora (`data/concepts/organism`); "
        "for SmolLM2 on the 8 English concept corpora set `text_model='smollm2'`, `corpus_dir='data/concepts'`."
    ),
    new_code_cell(
        'text_model = "steerkit/organism-text"   # or "smollm2", "tiny/llama", any HF causal LM\n'
        'target_model = "steerkit/organism"      # the MLLM the vectors are meant for (compatibility check)\n'
        'corpus_dir = "data/concepts/organism"\n'
        "# concepts: None = every corpus in corpus_dir; n: sentences per concept (None = all)\n"
        "concepts = None\n"
        "n = 60\n"
        'methods = ["mean_shift", "probe"]\n'
        "batch_size = 32",
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "import os, time\nfrom pathlib import Path\n\nimport torch\n\n"
        "from steerkit.models.textlm import load_text_model\n"
        "from steerkit.vectors import SteeringVector, available_concepts, load_corpus\n"
        "from steerkit.vectors.report import concept_report\n\n"
        "torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))\n"
        'out = Path(os.environ.get("STEERKIT_OUT", "outputs/02_text_vectors"))\n'
        "out.mkdir(parents=True, exist_ok=True)\n"
        "concepts = concepts or available_concepts(corpus_dir)\n"
        "concepts"
    ),
    new_markdown_cell("## The corpora\nEach sentence carries the character spans of its anchor word(s)."),
    new_code_cell(
        "import pandas as pd\n"
        "pd.DataFrame([{\"concept\": c, \"text\": s.text, \"anchors\": s.anchors}\n"
        "              for c in concepts for s in load_corpus(c, corpus_dir, n=3)])"
    ),
    new_markdown_cell("## Extract\nOne batched forward pass per batch collects every layer; both methods reuse it."),
    new_code_cell(
        "t0 = time.perf_counter()\n"
        "lm, tok = load_text_model(text_model)\n"
        "load_s = time.perf_counter() - t0\n"
        "rep = concept_report(lm, tok, concepts, corpus_dir, methods, n=n, out_dir=out, load_seconds=load_s,\n"
        "                     batch_size=batch_size)\n"
        'print(f"{lm.config._name_or_path}: {rep.n_layers} layers; load {load_s:.1f} s, "\n'
        "      f\"extraction {rep.meta['total_seconds']:.1f} s\")\n"
        "rep.timing"
    ),
    new_markdown_cell(
        "## Where is the concept linearly readable?\nHeld-out balanced accuracy of the anchor-vs-other probe "
        "per layer (chance 0.5). Part of it is lexical (anchor words are a closed vocabulary), so compare layers "
        "and concepts rather than reading the absolute level."
    ),
    new_code_cell("rep.probe_figure(\"balanced_accuracy\")"),
    new_code_cell(
        "rep.probe.pivot(index=\"layer\", columns=\"concept\", values=\"balanced_accuracy\").round(3)"
    ),
    new_markdown_cell("## How distinct are the concepts?\nCosine similarity of the concept vectors at the middle layer."),
    new_code_cell("rep.similarity_figure(\"mean_shift\")"),
    new_code_cell("rep.similarity_figure(\"probe\")"),
    new_markdown_cell(
        "## Saved vectors\n`<STEERKIT_OUT>/vectors/<concept>/<method>/` holds `vectors.safetensors` + "
        "`metadata.json`. Loading them against the target MLLM checks hidden size and layer count."
    ),
    new_code_cell(
        "from steerkit.models.loading import load_model\n\n"
        "target, _ = load_model(target_model)\n"
        "rows = []\n"
        "for (concept, method), v in rep.vectors.items():\n"
        '    w = SteeringVector.load(out / "vectors" / concept / method, model=target)  # raises on a mismatch\n'
        "    assert w == v\n"
        '    rows.append({"concept": concept, "method": method, "layers": len(w), "d": w.hidden_size,\n'
        '                 "norm_mid": round(w.norms[w.layers[len(w) // 2]], 3)})\n'
        "pd.DataFrame(rows)"
    ),
    new_code_cell("sorted(str(p.relative_to(out)) for p in out.rglob(\"*\") if p.is_file())[:12]"),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}})
path = ROOT / "notebooks" / "02_text_vectors.ipynb"
nbformat.write(nb, path)
print(path)

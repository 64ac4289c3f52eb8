"""Writes notebooks/01_quickstart.ipynb (the notebook is the artefact; this keeps its source reviewable)."""

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# steerkit quickstart\n\n"
        "Load a multimodal model through steerkit's adapter table, add a direction to the residual stream of one "
        "decoder layer on **image**, **text** or **both** kinds of token positions, and see where the logits move.\n\n"
        "The default model is the embedded organism (`steerkit/organism`, a small LLaVA trained by steerkit on a "
        "shapes world); any `tiny/<family>` name or a real checkpoint such as `google/paligemma2-3b-pt-224` works the "
        "same way."
    ),
    nbf.v4.new_code_cell(
        "# Parameters (papermill overrides these)\n"
        "model_name = \"steerkit/organism\"\n"
        "layer = None        # decoder layer to steer; None = the middle layer\n"
        "alpha = 4.0         # strength, in units of the vector as built below\n"
        "seed = 0\n"
        "out_dir = None      # default: $STEERKIT_OUT or outputs/01_quickstart",
        metadata={"tags": ["parameters"]},
    ),
    nbf.v4.new_code_cell(
        "import os, pathlib\n"
        "import pandas as pd, torch\n"
        "import steerkit\n"
        "from steerkit.effects import position_effects, plot_position_effects, demo_input\n"
        "from steerkit.models.generation import generate_text\n\n"
        "out = pathlib.Path(out_dir or os.environ.get('STEERKIT_OUT', 'outputs/01_quickstart'))\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "model, processor = steerkit.load_model(model_name)\n"
        "adapter = steerkit.adapter_for(model)\n"
        "layer = adapter.num_layers(model) // 2 if layer is None else layer\n"
        "pd.Series({'family': adapter.name, 'decoder layers': adapter.num_layers(model),\n"
        "           'hidden size': adapter.hidden_size(model), 'image token id': adapter.image_token_id(model),\n"
        "           'steered layer': layer})"
    ),
    nbf.v4.new_markdown_cell(
        "## An input and a direction\n"
        "`demo_input` gives an image and a question the model was built for. The direction here is the difference "
        "of the text backbone's layer activations on two contrasting words, a one-pair MeanShift; "
        "`02_text_vectors` builds real concept vectors from corpora."
    ),
    nbf.v4.new_code_cell(
        "image, prompt, (word_a, word_b) = demo_input(model_name, seed=seed)\n"
        "from steerkit.effects import word_direction\n"
        "vector = word_direction(model, processor, word_a, word_b, layer)\n"
        "print(prompt)\n"
        "print(f'direction {word_a!r} - {word_b!r} at layer {layer}: norm {vector.norm():.3f}')\n"
        "image"
    ),
    nbf.v4.new_markdown_cell(
        "## Where does steering act?\n"
        "Bars show how much the logits at each position change. Positions in the chosen scope are steered directly; "
        "later positions change through attention."
    ),
    nbf.v4.new_code_cell(
        "effects = position_effects(model, processor, image, prompt, vector, layer=layer, alpha=alpha)\n"
        "effects.to_parquet(out / 'position_effects.parquet')\n"
        "fig = plot_position_effects(effects)\n"
        "fig.write_html(out / 'position_effects.html')\n"
        "fig"
    ),
    nbf.v4.new_code_cell(
        "summary = effects.groupby(['scope', 'kind']).agg(positions=('position', 'size'), steered=('steered', 'sum'),\n"
        "                                                  mean_logit_delta=('logit_delta', 'mean')).reset_index()\n"
        "summary"
    ),
    nbf.v4.new_markdown_cell("## Generation with and without steering (prefill only)"),
    nbf.v4.new_code_cell(
        "rows = [dict(condition='baseline', answer=generate_text(model, processor, [prompt], [image], max_new_tokens=8)[0])]\n"
        "for scope in ('image', 'text', 'both'):\n"
        "    with steerkit.steer(model, vector, layers=[layer], alpha=alpha, tokens=scope, when='prefill'):\n"
        "        rows.append(dict(condition=f'steer {scope}', answer=generate_text(model, processor, [prompt], [image], max_new_tokens=8)[0]))\n"
        "steerkit.assert_no_hooks(model)\n"
        "answers = pd.DataFrame(rows)\n"
        "answers.to_csv(out / 'answers.csv', index=False)\n"
        "answers"
    ),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, "notebooks/01_quickstart.ipynb")

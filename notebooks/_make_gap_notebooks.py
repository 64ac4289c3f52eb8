"""Build notebooks 05_modality_gap and 06_self_distillation (run: .venv/bin/python notebooks/_make_gap_notebooks.py)."""

from __future__ import annotations

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str, tags: list[str] | None = None):
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = tags
    return cell


def write(name: str, cells: list) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, HERE / name)


SETUP = """
import os
import pathlib

import torch
from IPython.display import display

torch.set_num_threads(2)
OUT = pathlib.Path(os.environ.get("STEERKIT_OUT", "outputs/{name}"))
OUT.mkdir(parents=True, exist_ok=True)
"""

nb05 = [
    md("""
# 05 · The modality gap: the same problem as text and as pixels

"Reading, Not Thinking" (arXiv 2603.09095) asks a multimodal model the *same* problem five ways: as text, fully
rendered as an image, with only the instruction as text, and with an explicit transcription step (in the same
answer, or fed back as text in a second pass). The accuracy difference between Text and the image modes is the
modality gap; whether the transcripts are right tells *reading* errors from *thinking* errors.

This notebook runs that protocol with `steerkit.gap` on the embedded organism by default (its two-digit additions;
its prompt style has no OCR prompts, so the OCR modes are skipped there) or on any model `load_model` knows, with
the synthetic GSM8K-style problems or GSM8K itself. Then it sweeps font and resolution. Every table is written to
`STEERKIT_OUT`.
"""),
    code("""
model = "steerkit/organism"  # or a hub id / local path, or "tiny/llava" for a smoke test
problems = "auto"            # "auto" | "organism" | "synthetic" | "gsm8k"
n_items = 40
modes = "auto"               # "auto": every mode the prompt style supports; or a list of mode names
fonts = ["noto-sans", "noto-serif", "caveat"]
scales = [1.0, 0.5, 0.25]
sizes = [20]             # font sizes besides the default 32 (relative for the organism: 32 means its 15 px glyphs)
max_new_tokens = 48          # 48 fits the organism's traces; use ~1024 for real models (the paper's setting)
batch_size = 40
seed = 0
n_boot = 1000
""", tags=["parameters"]),
    code(SETUP.format(name="05_modality_gap") + """
from steerkit import load_model
from steerkit.gap import (MODES, error_shares, gap_report, length_stats, mode_input, plot_gap, plot_sweep,
                          problem_set, run_gap, style_for, sweep_render, tag_errors)
from steerkit.render import RenderConfig, font_sheet

mdl, processor = load_model(model)
probs = problem_set(problems, n_items, seed=seed, split="test", model=model)
style = style_for(probs)
run_modes = [m for m in MODES if style.supports(m)] if modes == "auto" else list(modes)
print(f"{len(probs)} problems from {probs[0].source!r}, prompt style {style.name!r}, modes {run_modes}")
"""),
    md("## One item in every mode\nThe text prompt the model gets, and the picture that goes with it."),
    code("""
item = probs[0]
print("question:", item.question, "| gold answer:", item.answer)
for mode in run_modes:
    x = mode_input(item, mode, style)
    print(f"\\n[{mode}] prompt: {x.prompt!r}", "(no image)" if x.image is None else f"+ image {x.image.size}")
    if x.image is not None:
        display(x.image if x.image.width <= 256 else x.image.resize((x.image.width // 2, x.image.height // 2)))
"""),
    md("The packaged fonts (every `fontpkg-*` wheel; a glyph a font lacks is an error, never a silent fallback):"),
    code("""display(font_sheet("Janet has 16 eggs: 47 + 38 = ?", size=24))"""),
    md("## Accuracy per mode, with paired bootstrap CIs against Text"),
    code("""
df = run_gap(mdl, processor, probs, modes=run_modes, style=style, max_new_tokens=max_new_tokens,
             batch_size=batch_size, seed=seed, skip_unsupported=True, model_name=model)
df.to_parquet(OUT / "gap.parquet", index=False)
report = gap_report(df, n_boot=n_boot)
report.to_parquet(OUT / "gap_report.parquet", index=False)
fig = plot_gap(report, title=f"{model}: accuracy per input mode (n={len(probs)})")
fig.write_html(OUT / "gap.html")
display(report[["label", "n", "accuracy", "acc_lo", "acc_hi", "diff", "diff_lo", "diff_hi", "mcnemar_p",
                "format_ok", "mean_chars"]].round(3))
fig
"""),
    md("""
## Reading or thinking?
Where a transcript exists (OCR modes), a wrong answer is a *reading* error when the transcript differs from the
source (a wrong number, or a character error rate above 5%), else a *thinking* error (sub-typed calculation /
format / incomplete / reasoning). Without a transcript, image-mode errors stay `untagged`. Response lengths per
mode show whether reasoning collapses when the problem arrives as pixels.
"""),
    code("""
tagged = tag_errors(df)
tagged.to_parquet(OUT / "gap_tagged.parquet", index=False)
shares = error_shares(tagged)
lengths = length_stats(df)
lengths.to_parquet(OUT / "lengths.parquet", index=False)
display(shares.round(3))
display(lengths.round(2))
for mode in run_modes:
    row = df[df["mode"] == mode].iloc[0]
    print(f"[{mode}] {row['response'][:160]!r}")
"""),
    md("## Font, resolution and size sweeps\nThe image mode under each font, and the default font at lower "
       "resolutions (scale 0.5 = half the pixels on each side) and other sizes, against Text on the same items."),
    code("""
sweep_mode = "instruction_image" if style.supports("instruction_image") else run_modes[-1]
configs = [RenderConfig(font=f) for f in fonts] + [RenderConfig(scale=s) for s in scales if s != 1.0]
configs += [RenderConfig(size=s) for s in sizes if s != RenderConfig().size] + [RenderConfig(invert=True)]
sw = sweep_render(mdl, processor, probs, configs, modes=[sweep_mode], style=style, max_new_tokens=max_new_tokens,
                  batch_size=batch_size, seed=seed, model_name=model)
sw.to_parquet(OUT / "sweep.parquet", index=False)
sweep_report = gap_report(sw, by=["config"], n_boot=n_boot)
sweep_report.to_parquet(OUT / "sweep_report.parquet", index=False)
display(sweep_report[["config", "label", "n", "accuracy", "acc_lo", "acc_hi", "diff", "diff_lo", "diff_hi"]].round(3))
default = RenderConfig()
plain = sw[(sw["mode"] == "text") | ((sw["scale"] == 1.0) & (sw["size"] == default.size) & ~sw["invert"].astype(bool))]
by_font = plot_sweep(plain, x="font", mode=sweep_mode)
by_font.write_html(OUT / "sweep_font.html")
by_font
"""),
    code("""
base = (sw["font"] == default.font) & ~sw["invert"].astype(bool)
res = sw[(sw["mode"] == "text") | (base & (sw["size"] == default.size))]
by_scale = plot_sweep(res, x="scale", mode=sweep_mode)
by_scale.write_html(OUT / "sweep_scale.html")
display(by_scale)
by_size = plot_sweep(sw[(sw["mode"] == "text") | (base & (sw["scale"] == 1.0))], x="size", mode=sweep_mode)
by_size.write_html(OUT / "sweep_size.html")
by_size
"""),
    code("""
text_acc = report.set_index("mode").loc["text", "accuracy"]
for _, r in report[report["mode"] != "text"].iterrows():
    print(f"{r['label']:>13}: {r['accuracy']:.2f} vs Text {text_acc:.2f}, gap {r['diff']:+.2f} "
          f"[{r['diff_lo']:+.2f}, {r['diff_hi']:+.2f}] (paired bootstrap 95% CI, n={int(r['n'])})")
print("outputs in", OUT)
"""),
]

nb06 = [
    md("""
# 06 · Self-distillation: teach the image mode with the model's own text-mode answers

The recipe of "Reading, Not Thinking": sample the model's solutions to *training* problems asked as text, keep the
correct ones, and fine-tune the model to give those answers when the problem arrives as an image (LoRA on the
language model only, the vision tower frozen; reference: rank 64, lr 2e-4, 2 epochs, effective batch 16).

Then measure on held-out problems, paired before vs after: the image-mode accuracy (the gap should shrink), the
text-mode accuracy (it must not drop beyond its CI: forgetting), the image mode in a font never trained on, and
(on the organism) multiple-choice scene questions, a task not trained on at all. The defaults are CI-sized (a
minute on two CPU cores); docs/distill.md reports larger runs.
"""),
    code("""
model = "steerkit/organism"
problems = "auto"            # "auto" | "organism" | "synthetic" | "gsm8k"
n_train = 64
n_test = 48
k = 4                        # samples per training problem
temperature = 0.7
max_new_tokens = 48
epochs = 2.0
rank = 64
lr = 2e-4
effective_batch = 16
per_device_batch = 16
scope = "lm"                 # "lm" | "lm+projector" | "vision"
text_replay = 0.0
transfer_fonts = ["noto-serif"]
transfer_per_task = 16       # organism scene questions per task for the transfer check (0 skips it)
seed = 0
n_boot = 1000
""", tags=["parameters"]),
    code(SETUP.format(name="06_self_distillation") + """
from steerkit import load_model
from steerkit.distill import DistillConfig
from steerkit.distill.experiment import ExperimentConfig, self_distill_experiment
from steerkit.gap import mode_input, plot_before_after, problem_set, style_for

mdl, processor = load_model(model)
train = problem_set(problems, n_train, seed=seed, split="train", model=model)
test = problem_set(problems, n_test, seed=seed, split="test", model=model)
style = style_for(train)
overlap = {p.question for p in train} & {p.question for p in test}
print(f"{len(train)} train / {len(test)} test problems ({train[0].source}), style {style.name!r}, "
      f"{len(overlap)} test questions also in train")
"""),
    md("## What a training pair looks like\nThe input is the image-mode prompt; the target is a text-mode trace."),
    code("""
x = mode_input(train[0], "instruction_image", style)
print("prompt:", repr(x.prompt))
display(x.image)
print("a text-mode trace of this problem would be the target, e.g. the gold one:",
      repr(train[0].extra.get("trace", train[0].extra.get("solution", ""))))
"""),
    md("## Run: before → traces → LoRA → after"),
    code("""
transfer_items = None
if transfer_per_task and train[0].source == "organism":
    from steerkit.models import organism
    transfer_items = [it for task in organism.TASKS
                      for it in organism.world_items(task, transfer_per_task, seed=seed, mode="image", split="test")]
cfg = ExperimentConfig(k=k, temperature=temperature, max_new_tokens=max_new_tokens, transfer_fonts=tuple(transfer_fonts),
                       text_replay=text_replay, seed=seed, batch_size=64, n_boot=n_boot,
                       distill=DistillConfig(rank=rank, lr=lr, epochs=epochs, effective_batch=effective_batch,
                                             per_device_batch=per_device_batch, scope=scope, seed=seed,
                                             save_steps=10_000, logging_steps=1))
res = self_distill_experiment(mdl, processor, train, test, OUT / "run", cfg, style=style,
                              transfer_items=transfer_items)
print("traces:", {k_: round(v, 3) for k_, v in res["trace_summary"].items()})
"""),
    md("## Before vs after on held-out problems (paired)"),
    code("""
cmp = res["comparison"]
display(cmp[["label", "n", "before", "after", "diff", "diff_lo", "diff_hi", "mcnemar_p", "significant"]].round(3))
fig = plot_before_after(cmp, title=f"{model}: self-distillation, held-out n={len(test)}")
fig.write_html(OUT / "before_after.html")
fig
"""),
    md("**Forgetting**: text-mode accuracy must not drop beyond its uncertainty."),
    code("""
print(res["forgetting"])
if res["transfer"] is not None:
    print("Transfer to scene questions (image mode, not trained on):")
    display(res["transfer"][["task", "n", "before", "after", "diff", "diff_lo", "diff_hi", "significant"]].round(3))
"""),
    md("## Training loss"),
    code("""
import plotly.express as px

log = res["train_log"]
loss = log.dropna(subset=["loss"]) if "loss" in log else log.iloc[:0]
lfig = px.line(loss, x="step", y="loss", title="LoRA training loss (response tokens only)", template="plotly_white")
lfig.write_html(OUT / "train_loss.html")
lfig
"""),
    code("""
img = cmp[cmp["mode"] == cfg.mode].iloc[0]
print(f"image mode: {img['before']:.2f} -> {img['after']:.2f}, paired diff {img['diff']:+.2f} "
      f"[{img['diff_lo']:+.2f}, {img['diff_hi']:+.2f}], McNemar p={img['mcnemar_p']:.3g}")
print("adapter saved in", res["adapter_dir"])
"""),
]

if __name__ == "__main__":
    write("05_modality_gap.ipynb", nb05)
    write("06_self_distillation.ipynb", nb06)
    print("wrote 05_modality_gap.ipynb, 06_self_distillation.ipynb")

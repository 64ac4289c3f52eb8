"""The whole self-distillation experiment in one call: before, traces, LoRA training, after, and the verdicts.

Measured on held-out problems with paired statistics (the same items before and after); a test problem that is
also a training problem is an error (:func:`check_held_out`):

- the gap: image-mode (``mode``) and text-mode accuracy before vs after, paired bootstrap CI of the change;
- forgetting: text-mode accuracy must not drop beyond its uncertainty (:func:`forgetting_check`);
- transfer: the image mode in fonts not used for training, and optionally a task not trained on (multiple-choice
  :class:`~steerkit.tasks.schema.Item` s scored by :func:`steerkit.tasks.evaluate`).

Example:
    >>> res = self_distill_experiment(model, processor, problem_set("organism", 200, split="train"),
    ...                               problem_set("organism", 100, split="test"), "runs/sd", ExperimentConfig())
    >>> res["comparison"]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from steerkit.distill.data import make_pairs
from steerkit.distill.traces import keep_correct, sample_traces, trace_summary
from steerkit.distill.train import DistillConfig, distill, forgetting_check
from steerkit.errors import DistillError
from steerkit.gap.modes import PromptStyle, run_gap, style_for
from steerkit.gap.problems import TextProblem
from steerkit.gap.report import compare_runs
from steerkit.render.text_image import RenderConfig


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of :func:`self_distill_experiment` (sampling, the image mode trained on, transfer fonts)."""

    k: int = 4
    temperature: float = 0.7
    max_new_tokens: int = 512
    max_per_item: int | None = None
    mode: str = "instruction_image"
    transfer_fonts: tuple[str, ...] = ()
    text_replay: float = 0.0
    seed: int = 0
    batch_size: int = 16
    n_boot: int = 2000
    distill: DistillConfig = field(default_factory=DistillConfig)


def check_held_out(train: Sequence[TextProblem], test: Sequence[TextProblem]) -> None:
    """Raise :class:`~steerkit.errors.DistillError` when a test problem's question is also a training question
    (a gain measured on it would be partly memorisation)."""
    shared = sorted({p.question for p in train} & {p.question for p in test})
    if shared:
        raise DistillError(f"{len(shared)} test problems are also training problems (e.g. {shared[:3]}); draw the "
                           "two sets from disjoint splits, e.g. problem_set(..., split='train') and "
                           "problem_set(..., split='test')")


def _evaluate(model: Any, processor: Any, test: Sequence[TextProblem], cfg: ExperimentConfig, style: PromptStyle,
              render: RenderConfig, transfer_problems: Sequence[TextProblem] | None = None) -> pd.DataFrame:
    parts = [run_gap(model, processor, test, modes=["text", cfg.mode], style=style, render=render,
                     max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed)]
    if transfer_problems:
        src = transfer_problems[0].source
        df = run_gap(model, processor, transfer_problems, modes=["text", cfg.mode], render=render,
                     max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed)
        parts.append(df.assign(mode=df["mode"] + f"@{src}"))
    for font in cfg.transfer_fonts:
        df = run_gap(model, processor, test, modes=[cfg.mode], style=style, render=render.replace(font=font),
                     max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed)
        parts.append(df.assign(mode=f"{cfg.mode}@{font}"))
    return pd.concat(parts, ignore_index=True)


def _transfer_items(model: Any, processor: Any, items: Sequence[Any], prefix: str) -> pd.DataFrame:
    from steerkit.tasks.evaluate import evaluate

    return evaluate(model, processor, items, method="letter", prefix=prefix, progress=False)


def self_distill_experiment(
    model: Any,
    processor: Any,
    train: Sequence[TextProblem],
    test: Sequence[TextProblem],
    out_dir: str | Path,
    config: ExperimentConfig = ExperimentConfig(),
    *,
    style: PromptStyle | None = None,
    render: RenderConfig | None = None,
    transfer_items: Sequence[Any] | None = None,
    transfer_prefix: str = "",
    transfer_problems: Sequence[TextProblem] | None = None,
    resume_from_checkpoint: bool | str | None = None,
) -> dict[str, Any]:
    """Evaluate, sample text-mode traces on ``train``, distil them into image-mode inputs, evaluate again.

    ``transfer_problems``: another problem set (e.g. GSM8K after training on synthetic problems), evaluated in text
    and the trained image mode, reported as modes ``text@<source>`` and ``<mode>@<source>``.
    ``model`` is changed in place (LoRA is injected); the returned ``model`` is the trained PeftModel. Every table
    is also written as parquet into ``out_dir``. Returns a dict with ``before``, ``after`` (run_gap frames),
    ``traces``, ``comparison`` (per mode: before, after, paired diff CI, McNemar p), ``forgetting`` (dict),
    ``trace_summary`` (dict), ``transfer`` (a comparison frame of the transfer task, or None), ``train_log``,
    ``model`` and ``lora_dir``.
    """
    from steerkit.tasks.stats import bootstrap_ci, mcnemar_exact, paired_bootstrap_diff

    check_held_out(train, test)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    style = style or style_for(list(train))
    render = render or RenderConfig()
    before = _evaluate(model, processor, test, config, style, render, transfer_problems)
    before.to_parquet(out / "before.parquet", index=False)
    tr_before = _transfer_items(model, processor, transfer_items, transfer_prefix) if transfer_items else None

    traces = sample_traces(model, processor, train, k=config.k, temperature=config.temperature,
                           max_new_tokens=config.max_new_tokens, style=style, seed=config.seed,
                           batch_size=config.batch_size)
    traces.to_parquet(out / "traces.parquet", index=False)
    kept = keep_correct(traces, max_per_item=config.max_per_item)
    pairs = make_pairs(kept, train, mode=config.mode, style=style, render=render, text_replay=config.text_replay,
                       seed=config.seed)
    result = distill(model, processor, pairs, out / "train", config.distill,
                     resume_from_checkpoint=resume_from_checkpoint)
    trained = result.model

    after = _evaluate(trained, processor, test, config, style, render, transfer_problems)
    after.to_parquet(out / "after.parquet", index=False)
    modes = list(dict.fromkeys(before["mode"]))
    comparison = compare_runs(before, after, modes=modes, n_boot=config.n_boot, seed=config.seed)
    comparison.to_parquet(out / "comparison.parquet", index=False)
    forgetting = forgetting_check(comparison, "text")

    transfer = None
    if transfer_items:
        tr_after = _transfer_items(trained, processor, transfer_items, transfer_prefix)
        rows = []
        for task in sorted(set(tr_before["task"])):
            a = tr_before[tr_before["task"] == task].set_index("id")["correct"].astype(float)
            b = tr_after[tr_after["task"] == task].set_index("id")["correct"].astype(float).loc[a.index]
            d = paired_bootstrap_diff(a.to_numpy(), b.to_numpy(), n_boot=config.n_boot, seed=config.seed)
            ca = bootstrap_ci(a.to_numpy(), n_boot=config.n_boot, seed=config.seed)
            cb = bootstrap_ci(b.to_numpy(), n_boot=config.n_boot, seed=config.seed)
            rows.append(dict(task=task, n=len(a), before=ca.value, before_lo=ca.lo, before_hi=ca.hi, after=cb.value,
                             after_lo=cb.lo, after_hi=cb.hi, diff=d.value, diff_lo=d.lo, diff_hi=d.hi,
                             mcnemar_p=mcnemar_exact(a.to_numpy(), b.to_numpy()).pvalue,
                             significant=bool(d.lo > 0 or d.hi < 0)))
        transfer = pd.DataFrame(rows)
        transfer.to_parquet(out / "transfer.parquet", index=False)

    summary = trace_summary(traces) | {"pairs": len(pairs), "train_steps": result.steps}
    (out / "summary.json").write_text(json.dumps(
        {"experiment": asdict(config), "traces": summary, "forgetting": forgetting}, indent=1, default=str))
    return dict(before=before, after=after, traces=traces, comparison=comparison, forgetting=forgetting,
                trace_summary=summary, transfer=transfer, train_log=result.log, model=trained,
                lora_dir=result.lora_dir)

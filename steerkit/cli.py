"""The ``steerkit`` command line (typer).

    steerkit sweep CONFIG.yaml                      # one process
    accelerate launch -m steerkit.cli sweep CONFIG.yaml   # items sharded over processes, one shared store

Other packages add their commands here (``extract``, ``evaluate``, ``gap``, ``distill``) as further
``@app.command()`` functions that call into the library; keep each a thin wrapper.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="steerkit: close the modality gap of multimodal LLMs.", no_args_is_help=True,
                  add_completion=False)


@app.callback()
def _main() -> None:
    """steerkit command line."""


@app.command()
def sweep(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="sweep configuration (YAML)"),
    out: str | None = typer.Option(None, help="results root (overrides the config's `out`)"),
    report: bool | None = typer.Option(None, "--report/--no-report", help="write best cells, heatmaps, report.md"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run the steering sweep a YAML config describes; resumes an interrupted run of the same config.

    Under ``accelerate launch`` each process takes its shard of the items (accelerate's PartialState) and writes
    into the same run folder; the main process writes the report once every shard is done.
    """
    import torch

    from steerkit.sweep.config import SweepConfig, run_config
    from steerkit.sweep.plan import shard_of_process
    from steerkit.sweep.report import has_selection_splits, write_report
    from steerkit.sweep.store import RunStore
    from steerkit.threads import set_threads

    set_threads()  # STEERKIT_THREADS, else torch's default
    cfg = SweepConfig.from_yaml(config)
    if out is not None:
        cfg.out = out
    rank, world = shard_of_process()
    df = run_config(cfg, rank=rank, world_size=world, progress=progress)
    run_dir = Path(df.attrs["run_dir"])
    if world > 1:
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()
    if rank == 0 and world > 1:
        df = RunStore.from_dir(run_dir).load()  # every shard's rows
    if rank == 0:
        if cfg.report if report is None else report:
            # without a train/test split (items.split: none) the only honest report is an in-sample one, so
            # say so rather than fail after the whole sweep has run
            in_sample = not has_selection_splits(df)
            if in_sample:
                typer.echo("no train/test split in these items (set items.split: stratified for held-out best "
                           "cells): the report is in-sample")
            paths = write_report(df, run_dir / "report", in_sample=in_sample)
            typer.echo(paths["report"].read_text())  # the best-cell tables with their CIs
            typer.echo(f"report: {paths['report']} (heatmaps, best_cells.csv beside it)")
        typer.echo(f"{len(df)} rows in {run_dir}")


if __name__ == "__main__":
    app()

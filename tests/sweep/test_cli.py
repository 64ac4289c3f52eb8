"""``steerkit sweep CONFIG.yaml``: runs, writes the report, resumes; sharded ranks share one store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from steerkit.cli import app
from steerkit.errors import DataError
from steerkit.sweep.config import SweepConfig
from steerkit.sweep.store import RunStore, list_runs
from steerkit.vectors import SteeringVector


def _config(tmp_path: Path, split: str = "stratified") -> Path:
    g = torch.Generator().manual_seed(0)
    paths = []
    for concept in ("counting", "spatial_relation"):
        v = SteeringVector({l: torch.randn(32, generator=g) * 0.05 for l in (0, 1)}, method="mean_shift",
                           concept=concept, n_layers=2, source_model="random")
        paths.append(str(v.save(tmp_path / "vectors" / concept)))
    cfg = {"model": "tiny/llava", "items": {"source": "synth", "tasks": ["Count", "Relation"], "n": 3, "size": 64,
                                            "split": split},
           "vectors": {"paths": paths}, "grid": {"layers": [0, 1], "alphas": [1.0, 2.0], "scopes": ["image", "both"]},
           "out": str(tmp_path / "runs"), "batch_size": 4}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_sweep_writes_results_and_report_and_resumes(tmp_path):
    cfg = _config(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["sweep", str(cfg), "--no-progress"])
    assert res.exit_code == 0, res.output
    [run_dir] = list_runs(tmp_path / "runs")
    df = RunStore.from_dir(run_dir).load()
    # 6 items x (2 vectors x 2 layers x 2 alphas x 2 scopes + baseline + 2 prompting baselines)
    assert len(df) == 6 * (2 * 2 * 2 * 2 + 1 + 2)
    assert set(df[df.method == "prompt"].concept) == {"counting", "spatial_relation"}
    assert (run_dir / "report" / "report.md").exists() and (run_dir / "report" / "best_cells.csv").exists()
    assert "in-sample" not in (run_dir / "report" / "report.md").read_text()  # stratified: held-out best cells
    parts = sorted((run_dir / "parts").glob("part-*"))
    res = runner.invoke(app, ["sweep", str(cfg), "--no-progress", "--no-report"])
    assert res.exit_code == 0 and sorted((run_dir / "parts").glob("part-*")) == parts  # nothing recomputed


def test_cli_select_confirm_protocol(tmp_path):
    cfg = yaml.safe_load(_config(tmp_path).read_text())
    cfg.update(protocol="select_confirm", pairs={"Count": ["counting"], "Relation": ["spatial_relation"]})
    cfg["items"]["n"] = 6
    (tmp_path / "sc.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "sc.yaml"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "Best cells chosen on the train split" in res.output and "MDE" in res.output
    select_dir, confirm_dir = sorted(list_runs(tmp_path / "runs"), key=lambda p: "confirm" in p.name)
    assert "select" in select_dir.name and "confirm" in confirm_dir.name
    train = RunStore.from_dir(select_dir).load()
    test = RunStore.from_dir(confirm_dir).load()
    assert set(train.split) == {"train"} and set(test.split) == {"test"}
    # per test item: baseline, its concept's hint, and one row per chosen cell (one per method x scope)
    assert len(test) == test.item_id.nunique() * (1 + 1 + 2)
    assert (select_dir / "report" / "report.md").exists()


def test_shipped_pipeline_configs_parse():
    root = Path(__file__).resolve().parents[2]
    for path in [root / "configs" / "pipeline.yaml", *sorted((root / "benchmarks" / "configs").glob("*.yaml"))]:
        cfg = SweepConfig.from_yaml(path)
        assert cfg.grid["layers"] and cfg.items["tasks"], path


def test_cli_report_without_a_split_is_labelled_in_sample(tmp_path):
    res = CliRunner().invoke(app, ["sweep", str(_config(tmp_path, split="none")), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "the report is in-sample" in res.output
    [run_dir] = list_runs(tmp_path / "runs")
    md = (run_dir / "report" / "report.md").read_text()
    assert md.startswith("# Sweep report (in-sample)") and "→ test" not in md


def test_config_errors_name_the_fix(tmp_path):
    with pytest.raises(DataError, match="known keys"):
        SweepConfig.from_dict({"modle": "x"})
    with pytest.raises(DataError, match="grid.alphas"):
        SweepConfig.from_dict({"grid": {"layers": [1], "alphas": []}})


@pytest.mark.slow
def test_two_processes_via_env_share_one_store(tmp_path):
    """Two real processes, as `accelerate launch` would start them (RANK/WORLD_SIZE env, gloo on CPU)."""
    cfg = _config(tmp_path)
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "steerkit.cli", "sweep", str(cfg), "--no-progress", "--no-report"],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=400) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    [run_dir] = list_runs(tmp_path / "runs")
    ranks = {f.name.split("-")[1] for f in (run_dir / "parts").glob("part-*")}
    assert ranks == {"r000", "r001"}
    df = RunStore.from_dir(run_dir).load()
    assert len(df) == 6 * (2 * 2 * 2 * 2 + 1 + 2) and not df.duplicated(["item_id", "method", "concept", "layer",
                                                                          "scope", "alpha"]).any()

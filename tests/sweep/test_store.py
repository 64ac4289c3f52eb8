"""Resumable, lossless results: kill-and-resume, config changes, sharded ranks merging into one store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from steerkit.errors import StoreError
from steerkit.sweep.engine import sweep
from steerkit.sweep.store import ROW_KEY, RunStore, list_runs

from .helpers import make_items, make_vectors

GRID = dict(layers=[0, 1], alphas=[0.5, 2.0], scopes=["image", "both"])


class Stop(Exception):
    pass


def _run(model, processor, items, vecs, root, **kw):
    return sweep(model, processor, items, vecs, out_dir=root, run_name="t", batch_size=2, progress=False, **GRID, **kw)


def _raw_parts(run_dir: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted((run_dir / "parts").glob("part-*.parquet"))],
                     ignore_index=True)


def _same(a: pd.DataFrame, b: pd.DataFrame, exact: bool = True) -> None:
    """Identical rows; with ``exact=False`` log-probs may differ in the last float32 bits (other batch padding)."""
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    if exact:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        return
    pd.testing.assert_frame_equal(a.drop(columns="logprobs"), b.drop(columns="logprobs"), check_exact=True)
    np.testing.assert_allclose(np.concatenate(a.logprobs.to_list()), np.concatenate(b.logprobs.to_list()),
                               atol=1e-5)


@pytest.fixture
def setup(tiny):
    model, processor = tiny("llava")
    items = make_items(5)
    vecs = make_vectors(model, concepts=("counting", "spatial relationship"), layers=[0, 1])
    return model, processor, items, vecs


@pytest.mark.parametrize("stop_after", [1, 6])
def test_interrupted_sweep_resumes_to_identical_rows(setup, tmp_path, stop_after):
    model, processor, items, vecs = setup
    full = _run(model, processor, items, vecs, tmp_path / "a")

    def bomb(p):
        if p.units_done >= stop_after:
            raise Stop

    with pytest.raises(Stop):
        _run(model, processor, items, vecs, tmp_path / "b", callback=bomb, flush_every=1)
    [run_dir] = list_runs(tmp_path / "b")
    before = _raw_parts(run_dir)
    assert 0 < len(before) < len(full)
    resumed = _run(model, processor, items, vecs, tmp_path / "b")
    _same(full, resumed)
    raw = _raw_parts(run_dir)
    # nothing recomputed: the resumed run only added the rows that were missing, and no row is stored twice
    assert len(raw) == len(full)
    assert not raw.duplicated(subset=list(ROW_KEY)).any()
    # a third run finds everything done and writes nothing
    n_parts = len(list((run_dir / "parts").glob("part-*")))
    _same(full, _run(model, processor, items, vecs, tmp_path / "b"))
    assert len(list((run_dir / "parts").glob("part-*"))) == n_parts


_CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads({threads})   # the parent's count: another split of the sums would change the last bits
    from steerkit.models.tiny import tiny_model
    from steerkit.sweep.engine import sweep
    from sweep.helpers import make_items, make_vectors
    model, processor = tiny_model("llava")
    vecs = make_vectors(model, concepts=("counting", "spatial relationship"), layers=[0, 1])
    def die(p):
        if p.units_done >= {k}:
            os.kill(os.getpid(), signal.SIGKILL)   # no finally, no flush: the hardest stop
    sweep(model, processor, make_items(5), vecs, out_dir={root!r}, run_name="t", batch_size=2, progress=False,
          callback=die, flush_every=2, layers=[0, 1], alphas=[0.5, 2.0], scopes=["image", "both"])
""")


@pytest.mark.slow
def test_sigkilled_process_resumes_to_identical_rows(setup, tmp_path):
    model, processor, items, vecs = setup
    full = _run(model, processor, items, vecs, tmp_path / "a")
    code = _CHILD.format(tests=str(Path(__file__).resolve().parents[1]), k=9, root=str(tmp_path / "b"),
                         threads=torch.get_num_threads())
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    [run_dir] = list_runs(tmp_path / "b")
    assert 0 < len(_raw_parts(run_dir)) < len(full)
    _same(full, _run(model, processor, items, vecs, tmp_path / "b"))
    assert len(_raw_parts(run_dir)) == len(full)


def test_fingerprint_survives_save_pretrained_but_not_a_config_change(tmp_path):
    # save_pretrained writes dtype/architectures into the live config: the same model must keep its run folder.
    from steerkit.models.tiny import tiny_model
    from steerkit.sweep.fingerprint import model_fingerprint

    model, _ = tiny_model("llava")
    before = model_fingerprint(model)
    model.save_pretrained(tmp_path / "m")
    assert model.config.architectures == ["LlavaForConditionalGeneration"]
    assert model_fingerprint(model) == before
    model.config.text_config.rope_theta = 1234.0
    assert model_fingerprint(model)["config"] != before["config"]


def test_changed_configuration_never_mixes(setup, tmp_path):
    model, processor, items, vecs = setup
    _run(model, processor, items[:3], vecs, tmp_path)
    other = sweep(model, processor, items[:3], vecs, out_dir=tmp_path, run_name="t", layers=[0, 1], alphas=[0.5],
                  scopes=["image"], progress=False)
    runs = list_runs(tmp_path)
    assert len(runs) == 2 and set(other.alpha) == {0.0, 0.5}
    # different items -> another folder as well
    _run(model, processor, items[1:4], vecs, tmp_path)
    assert len(list_runs(tmp_path)) == 3
    # a folder whose recorded configuration disagrees is refused with an explanation
    cfg_file = runs[0] / "config.json"
    record = json.loads(cfg_file.read_text())
    config = record["config"]
    record["config"] = {**config, "alphas": [9.0]}
    cfg_file.write_text(json.dumps(record))
    with pytest.raises(StoreError, match="different configuration"):
        RunStore.open(tmp_path, config, name="t")


def test_two_ranks_shard_items_and_merge(setup, tmp_path):
    model, processor, items, vecs = setup
    full = _run(model, processor, items, vecs, tmp_path / "one")
    for rank in (1, 0):
        _run(model, processor, items, vecs, tmp_path / "two", rank=rank, world_size=2)
    [run_dir] = list_runs(tmp_path / "two")
    ranks = {f.name.split("-")[1] for f in (run_dir / "parts").glob("part-*")}
    assert ranks == {"r000", "r001"}
    store = RunStore.from_dir(run_dir)
    # shards batch other items together (other padding), so log-probs agree to float32 rounding only
    _same(full, store.load(), exact=False)
    merged = store.load()
    store.compact()
    assert len(store.part_files()) == 1
    _same(merged, store.load())


def test_world_size_from_environment(setup, tmp_path, monkeypatch):
    """Under ``accelerate launch`` rank and world size come from accelerate's PartialState (env vars)."""
    import accelerate

    class FakeState:  # what accelerate launch would give rank 1 of 2, without starting a process group
        process_index, num_processes = 1, 2

        def __init__(self, cpu: bool = False):
            pass

    model, processor, items, vecs = setup
    monkeypatch.setattr(accelerate, "PartialState", FakeState)
    monkeypatch.setenv("WORLD_SIZE", "2")
    df = _run(model, processor, items, vecs, tmp_path)
    assert set(df.item_index) == {1, 3}

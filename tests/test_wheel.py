"""The wheel works outside the checkout: built from this tree, installed into a fresh virtual environment in a
temporary folder, it loads the embedded organism and the concept corpora from its own package data, steers the
organism and scores items exactly as the checkout does.

The fresh environment gets only the wheel (``--no-deps``); the dependencies come from this interpreter's
site-packages through a path line in a ``.pth`` file. Such a line adds the folder to ``sys.path`` but does not run
the ``.pth`` files inside it, so the editable install of the checkout (``__editable__.steerkit-*.pth``) stays
invisible to the child; the child checks where ``steerkit`` came from. Everything runs offline (``--no-index``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "steerkit" / "data"

# Run in the child (from the wheel) and in this process (from the checkout); prints one JSON line of results.
PROBE = textwrap.dedent('''
    import json, sys
    import torch
    import steerkit
    from steerkit.models import organism
    from steerkit.models.textlm import load_text_model
    from steerkit.tasks import evaluate
    from steerkit.vectors import extract, load_corpus
    from steerkit.vectors.corpus import DEFAULT_DIR, available_concepts

    torch.set_num_threads(THREADS)  # the parent's count: a different one can change the last bits of the logits
    model, processor = steerkit.load_model("steerkit/organism")
    adapter = steerkit.adapter_for(model)
    layer = adapter.num_layers(model) // 2
    items = organism.world_items("Count", 8, seed=0, mode="image")
    # A counting direction from the organism's own corpus, read from the shipped concept folder.
    sentences = load_corpus("counting", DEFAULT_DIR / "organism", n=40)
    lm, tok = load_text_model("steerkit/organism-text")
    vector = extract(lm, tok, sentences, methods=("mean_shift",), layers=[layer], progress=False)["mean_shift"]

    inputs = adapter.build_inputs(processor, [it.prompt for it in items], [it.image for it in items])
    with torch.no_grad():
        plain = model(**inputs).logits[:, -1]
        with steerkit.steer(model, vector, layers=[layer], alpha=8.0, tokens="image"):
            steered = model(**inputs).logits[:, -1]
    steerkit.assert_no_hooks(model)
    df = evaluate(model, processor, items, prefix="", progress=False, conditions={
        "baseline": None,
        "steered": lambda: steerkit.steer(model, vector, layers=[layer], alpha=8.0, tokens="image")})
    print(json.dumps(dict(
        steerkit_file=steerkit.__file__,
        organism_dir=str(organism.default_dir()),
        corpus_dir=str(DEFAULT_DIR),
        editable_finder_loaded=any("__editable__" in m for m in sys.modules),
        concepts=available_concepts(),
        organism_concepts=available_concepts(DEFAULT_DIR / "organism"),
        english_rows=len(load_corpus("negation")),
        sentences=[s.text for s in sentences],
        max_logit_change=float((steered - plain).abs().max()),
        accuracy=df.groupby("condition")["correct"].mean().to_dict(),
        preds=df["pred"].tolist(),
        lp_A=df["lp_A"].tolist(),
    )))
''')


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _build_wheel(tmp: Path) -> Path:
    """The wheel of this tree, built from a copy (the build writes build/ and *.egg-info next to its sources)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "steerkit", src / "steerkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          str(src), "-w", str(dist)])
    wheels = list(dist.glob("steerkit-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_env(tmp: Path, wheel: Path) -> Path:
    """A new venv holding only the wheel; this interpreter's site-packages reachable through a plain path line."""
    env = tmp / "env"
    venv.create(env, with_pip=False, symlinks=True)
    python = env / "bin" / "python"
    child_site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                      .stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (child_site / "_parent_site_packages.pth").write_text("".join(f"{p}\n" for p in ours))
    # Before the wheel goes in, the dependencies import and steerkit does not: the checkout is out of reach.
    probe = _run([str(python), "-c", "import importlib.util as u; print(u.find_spec('transformers') is not None, "
                                     "u.find_spec('steerkit') is None)"], cwd=tmp, env=_child_env())
    assert probe.stdout.split() == ["True", "True"], probe.stdout
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)])
    return python


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STEERKIT_ORGANISM_DIR")}
    return env | {"PYTHONNOUSERSITE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_loads_steers_and_scores(tmp_path, monkeypatch):
    t0 = time.perf_counter()
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for p in DATA.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {"steerkit/data/organism/mllm/model.safetensors", "steerkit/data/organism/text/model.safetensors",
            "steerkit/data/organism/mllm/tokenizer.json", "steerkit/data/concepts/counting.jsonl",
            "steerkit/data/concepts/organism/counting.jsonl"} <= shipped
    assert not shipped - names, f"the wheel lacks package data: {sorted(shipped - names)}"

    python = _fresh_env(tmp_path, wheel)
    work = tmp_path / "work"  # neither the checkout nor a parent of it: nothing found relative to the cwd
    work.mkdir()
    import torch

    probe = PROBE.replace("THREADS", str(torch.get_num_threads()))
    out = _run([str(python), "-c", probe], cwd=work, env=_child_env()).stdout
    child = json.loads(out.strip().splitlines()[-1])
    seconds = time.perf_counter() - t0

    env_dir = tmp_path / "env"
    for key in ("steerkit_file", "organism_dir", "corpus_dir"):
        assert Path(child[key]).is_relative_to(env_dir), (key, child[key])
        assert not Path(child[key]).is_relative_to(ROOT), (key, child[key])
    assert not child["editable_finder_loaded"]
    assert child["concepts"][:8] == ["spatial_relation", "counting", "attribute", "entity", "action", "temporal",
                                     "comparison", "negation"]
    assert set(child["organism_concepts"]) == {p.stem for p in (DATA / "concepts" / "organism").glob("*.jsonl")}
    assert child["english_rows"] == 240
    assert child["max_logit_change"] > 1e-3, "steering changed no logit"
    assert set(child["accuracy"]) == {"baseline", "steered"}
    for acc in child["accuracy"].values():
        assert 0.0 <= acc <= 1.0

    # The same probe in this process, from the checkout: the same corpus, predictions and accuracies.
    monkeypatch.delenv("STEERKIT_ORGANISM_DIR", raising=False)
    monkeypatch.chdir(work)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(probe, "<probe>", "exec"), {"__name__": "probe"})
    here = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert Path(here["steerkit_file"]).is_relative_to(ROOT)
    assert child["sentences"] == here["sentences"]
    assert child["accuracy"] == here["accuracy"]
    assert child["preds"] == here["preds"]
    assert child["lp_A"] == pytest.approx(here["lp_A"], abs=1e-5)
    assert child["max_logit_change"] == pytest.approx(here["max_logit_change"], rel=1e-4)
    print(f"wheel test: build + venv + child run {seconds:.1f} s; accuracy {child['accuracy']}")


def test_packaged_paths_lie_inside_the_package_and_name_the_fix():
    import importlib.resources

    import steerkit
    from steerkit.errors import DataError
    from steerkit.models import organism
    from steerkit.resources import packaged

    pkg = Path(steerkit.__file__).parent
    assert Path(importlib.resources.files("steerkit")) == pkg
    assert organism.SHIPPED_DIR == pkg / "data" / "organism"
    assert (organism.SHIPPED_DIR / "mllm" / "model.safetensors").is_file()
    assert packaged("data", "not-built") == pkg / "data" / "not-built"  # a build destination may not exist yet
    with pytest.raises(DataError, match="data/not-built is missing.*reinstall"):
        packaged("data", "not-built", must_exist=True)


def test_packaged_refuses_a_zipped_package(monkeypatch, tmp_path):
    """From a zip archive the data are no folders; model loaders need real paths, so the helper says so."""
    import importlib.resources

    from steerkit.errors import DataError
    from steerkit.resources import packaged

    archive = tmp_path / "steerkit.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("steerkit/__init__.py", "")
    monkeypatch.setattr(importlib.resources, "files", lambda name: zipfile.Path(archive, "steerkit/"))
    with pytest.raises(DataError, match="install it unzipped"):
        packaged("data", "organism")

"""Every notebook runs headless under papermill on the embedded default (its own parameters cell)."""

from __future__ import annotations

import os
import pathlib

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def test_every_notebook_has_a_parameters_cell():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        assert nb.cells[0].cell_type == "markdown", f"{path.name}: first cell should say what and why"


def test_notebooks_are_their_own_source():
    """The .ipynb is the one source of each notebook: stored without outputs, with no script that writes it."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them (jupyter nbconvert --clear-output)"
    here = pathlib.Path(__file__).resolve()
    names = [nb.name for nb in NOTEBOOKS]
    writers = [p.relative_to(ROOT) for p in ROOT.rglob("*.py") if ".venv" not in p.parts and p != here
               and "new_code_cell" in (text := p.read_text()) and any(n in text for n in names)]
    assert not writers, f"notebook generator scripts {writers}: edit the .ipynb itself instead"



def test_notebooks_take_their_threads_from_the_rule():
    """A notebook that fixes its own thread count oversubscribes a shared CPU; steerkit.threads.set_threads lets
    STEERKIT_THREADS give it its share."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = "".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "set_num_threads" not in code, f"{path.name} fixes its own thread count; call steerkit.threads.set_threads"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    import papermill as pm

    out_dir = tmp_path / path.stem
    out_dir.mkdir()
    monkeypatch.setenv("STEERKIT_OUT", str(out_dir))
    pm.execute_notebook(str(path), str(out_dir / path.name), cwd=str(ROOT), kernel_name="python3",
                        progress_bar=False)
    executed = nbformat.read(out_dir / path.name, as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert any(out_dir.iterdir()), f"{path.name} wrote nothing to STEERKIT_OUT"

"""Model profiles: generic code reaches an embedded model only through its profile (no name branches)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from steerkit.errors import DataError
from steerkit.models import profiles
from steerkit.models.profiles import ModelProfile, find_profile, get_profile, register_profile

ROOT = Path(__file__).resolve().parents[2]


def test_organism_profile_answers_to_its_names():
    prof = get_profile("steerkit/organism")
    assert find_profile("steerkit/organism-text") is prof and find_profile("organism") is prof
    assert find_profile("google/paligemma2-3b-pt-224") is None and find_profile(None) is None
    with pytest.raises(DataError, match="no model profile named 'nope'.*steerkit/organism"):
        get_profile("nope")
    with pytest.raises(DataError, match="no items for tasks \\['Distance'\\]"):
        prof.make_items(["Distance"], 2)


@pytest.fixture
def second_profile():
    """A second organism made of the first one's parts under new names: what a new profile registers."""
    base = get_profile("steerkit/organism")
    calls: list[str] = []

    def load(path=None):
        calls.append("load")
        return base.load(path)

    twin = dataclasses.replace(base, name="lab/twin", text_name="lab/twin-text", source="twin", load=load,
                               problems=lambda n, seed=0, split="test": [
                                   dataclasses.replace(p, source="twin") for p in base.problems(n, seed=seed, split=split)])
    register_profile("lab/twin", twin)
    yield twin, calls
    profiles.REGISTRY.pop("lab/twin")


def test_a_second_profile_plugs_into_every_generic_path(second_profile):
    """load_model, the text-LM loader, gap problems/styles, sweep items and the demo input all find a newly
    registered profile by its names, with no change to generic code."""
    from steerkit.effects import demo_input
    from steerkit.gap import problem_set, style_for
    from steerkit.models.loading import load_model
    from steerkit.models.textlm import load_text_model
    from steerkit.sweep.config import load_items

    twin, calls = second_profile
    model, _ = load_model("lab/twin")
    assert calls == ["load"] and type(model).__name__ == "LlavaForConditionalGeneration"
    lm, _ = load_text_model("lab/twin-text")
    assert lm.config._name_or_path == "lab/twin-text"
    probs = problem_set("auto", 3, model="lab/twin")
    assert {p.source for p in probs} == {"twin"} and style_for(probs).name == "organism"
    with pytest.raises(Exception, match="mix sources"):
        style_for(probs + problem_set("synthetic", 2))
    items = load_items({"source": "model", "tasks": ["Relation"], "n": 3}, "lab/twin")
    assert [it.id for it in items] == [it.id for it in load_items({"source": "twin", "tasks": ["Relation"], "n": 3})]
    assert demo_input("lab/twin")[1] == demo_input("steerkit/organism")[1]
    with pytest.raises(DataError, match="already"):
        register_profile("lab/twin", twin)


def test_items_source_model_needs_a_profile():
    from steerkit.sweep.config import load_items

    with pytest.raises(DataError, match="'tiny/llava' has no model profile.*items.source"):
        load_items({"source": "model", "tasks": ["Count"], "n": 2}, "tiny/llava")


def test_no_organism_branch_outside_its_package():
    """Outside the organisms' own packages, "organism" appears only in docstrings, comments and the registry entry:
    no comparison, membership test or import of the organism package drives behaviour."""
    out = subprocess.run(["grep", "-rn", "organism", "steerkit", "--include=*.py"], cwd=ROOT, capture_output=True,
                         text=True).stdout.splitlines()
    behaviour = re.compile(r"(==|!=|\bin\b|import|startswith|endswith).*organism|organism.*(==|!=)")
    allowed = ("steerkit/models/profiles.py",)  # the registry entry and the default model name
    offending = []
    for line in out:
        path, _, code = line.split(":", 2)
        if path.startswith(("steerkit/models/organism/", "steerkit/models/organism_smol/")) or path in allowed:
            continue
        stripped = code.strip()
        if stripped.startswith(("#", '"', ">>>", "...")) or not behaviour.search(stripped):
            continue
        offending.append(line)
    assert offending == []

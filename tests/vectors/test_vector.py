"""SteeringVector: exact save/load, mismatch errors, arithmetic, and use with the hook engine."""

from __future__ import annotations

import json

import pytest
import torch

from steerkit.errors import DataError, VectorMismatchError
from steerkit.vectors.vector import SteeringVector, cosine_similarity_frame, mean

from .helpers import bytelevel_tokenizer, tiny_llama


def _vec(d=32, n_layers=3, layers=(0, 2), concept="counting", seed=0, dtype=torch.float32, method="mean_shift"):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector({l: torch.randn(d, generator=g).to(dtype) for l in layers}, method=method,
                          concept=concept, n_layers=n_layers, source_model="tiny", corpus_hash="abc",
                          extra={"probe": [{"layer": 0, "test_accuracy": 0.75}], "feature_ids": [3, 1]})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_save_load_round_trip_is_exact(tmp_path, dtype):
    v = _vec(dtype=dtype)
    v.save(tmp_path / "v")
    w = SteeringVector.load(tmp_path / "v")
    assert w == v
    assert w.metadata == v.metadata
    for l in v:
        assert w[l].dtype == dtype and torch.equal(w[l], v[l])
    meta = json.loads((tmp_path / "v" / "metadata.json").read_text())
    assert meta["hidden_size"] == 32 and meta["n_layers"] == 3 and meta["layers"] == [0, 2]
    assert meta["extra"]["feature_ids"] == [3, 1] and meta["steerkit_version"]
    assert set(meta["norms"]) == {"0", "2"}


def test_mapping_behaviour():
    v = _vec()
    assert isinstance(v, dict) is False and len(v) == 2 and list(v) == [0, 2] and 2 in v and 1 not in v
    assert dict(v.items()).keys() == {0, 2}
    with pytest.raises(KeyError):
        v[1]


def test_mismatched_model_names_both_sizes(tmp_path):
    tok = bytelevel_tokenizer()
    model = tiny_llama(tok, n_layers=3, hidden=32)
    _vec(d=32, n_layers=3).check_compatible(model)
    with pytest.raises(VectorMismatchError, match=r"hidden size 16.*hidden size 32"):
        _vec(d=16, n_layers=3).check_compatible(model)
    with pytest.raises(VectorMismatchError, match=r"5 decoder layers.*has 3"):
        _vec(d=32, n_layers=5).check_compatible(model)
    _vec(d=16).save(tmp_path / "small")
    with pytest.raises(VectorMismatchError, match="16"):
        SteeringVector.load(tmp_path / "small", model=model)


def test_steer_accepts_it_and_checks_it():
    from steerkit import steer

    tok = bytelevel_tokenizer()
    model = tiny_llama(tok, n_layers=3, hidden=32)
    enc = tok(["The cup is under the table."], return_tensors="pt")
    base = model(**enc).logits
    v = _vec(d=32, n_layers=3)
    with steer(model, v, layers=[0], alpha=2.0, tokens="text"):
        steered = model(**enc).logits
    assert not torch.allclose(base, steered)
    torch.testing.assert_close(model(**enc).logits, base)  # hooks removed
    with pytest.raises(VectorMismatchError):
        with steer(model, _vec(d=32, n_layers=4), layers=[0], tokens="text"):
            pass


def test_arithmetic():
    a, b = _vec(seed=1, concept="counting"), _vec(seed=2, concept="negation")
    n = a.normalize()
    assert all(abs(x - 1) < 1e-6 for x in n.norms.values())
    assert torch.equal((2 * a)[0], a[0] * 2) and torch.equal((a * 2)[2], a[2] * 2)
    s = a + b
    assert torch.equal(s[0], a[0] + b[0]) and s.concept == "counting+negation" and s.extra["op"] == "sum"
    m = mean([a, b])
    torch.testing.assert_close(m[2], (a[2] + b[2]) / 2)
    assert SteeringVector.mean([a, b]) == m and m.method == "mean(mean_shift)"
    torch.testing.assert_close((a - a)[0], torch.zeros(32))
    with pytest.raises(VectorMismatchError):
        a + _vec(d=16)
    with pytest.raises(VectorMismatchError, match="different layers"):
        a + _vec(layers=(0, 1))
    with pytest.raises(TypeError):
        a * "x"


def test_constructor_and_load_errors(tmp_path):
    with pytest.raises(DataError):
        SteeringVector({}, method="m", concept="c", n_layers=2)
    with pytest.raises(VectorMismatchError, match="outside"):
        SteeringVector({5: torch.zeros(4)}, method="m", concept="c", n_layers=2)
    with pytest.raises(VectorMismatchError):
        SteeringVector({0: torch.zeros(4), 1: torch.zeros(5)}, method="m", concept="c", n_layers=2)
    with pytest.raises(DataError, match="not a saved SteeringVector"):
        SteeringVector.load(tmp_path)


def test_cosine_similarity_frame():
    a, b = _vec(seed=1), _vec(seed=2)
    sim = cosine_similarity_frame({"a": a, "b": b, "-a": -a}, layer=0)
    assert list(sim.columns) == ["a", "b", "-a"]
    assert sim.loc["a", "a"] == pytest.approx(1.0) and sim.loc["a", "-a"] == pytest.approx(-1.0)
    assert sim.loc["a", "b"] == pytest.approx(sim.loc["b", "a"])

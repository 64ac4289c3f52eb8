"""SAE vectors offline: a sae-lens SAE built from a config, saved and loaded from disk."""

from __future__ import annotations

import pytest
import torch

from steerkit.errors import DataError, VectorMismatchError
from steerkit.vectors.corpus import load_corpus
from steerkit.vectors.methods import extract, gemma_scope_sae_id, load_sae, sae_vector

from .helpers import bytelevel_tokenizer, tiny_llama

sae_lens = pytest.importorskip("sae_lens")


def _planted_sae(d_in: int, d_sae: int, direction: torch.Tensor, feature: int, seed: int = 0):
    """A StandardSAE from its config whose feature ``feature`` reads (and writes) ``direction``."""
    from sae_lens import SAE

    sae = SAE.from_dict({"architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
                         "device": "cpu", "apply_b_dec_to_input": False})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) * 0.01)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.W_enc[:, feature] = direction * 5
        sae.W_dec[feature] = direction
    return sae


def test_sae_vector_finds_the_planted_feature_via_disk(tmp_path):
    tok = bytelevel_tokenizer()
    model = tiny_llama(tok, n_layers=2)
    sents = load_corpus("spatial_relation", n=24, seed=1)
    ms = extract(model, tok, sents, methods=("mean_shift",), progress=False)["mean_shift"]
    u = ms[1] / ms[1].norm()  # the anchor direction of layer 1
    sae = _planted_sae(32, 64, u, feature=7)
    sae.save_model(str(tmp_path / "sae_l1"))
    spec = {1: str(tmp_path / "sae_l1")}
    vecs = extract(model, tok, sents, methods=("mean_shift", "sae"), saes=spec, top_k=3, progress=False)
    v = vecs["sae"]
    rec = v.extra["sae"][0]
    assert v.method == "sae" and v.layers == [1] and rec["layer"] == 1
    assert rec["feature_ids"][0] == 7 and len(rec["feature_ids"]) == 3 and rec["d_sae"] == 64
    assert rec["scores"] == sorted(rec["scores"], reverse=True)
    loaded = load_sae(spec[1])
    expected = loaded.W_dec[rec["feature_ids"]].mean(0)
    torch.testing.assert_close(v[1], expected / expected.norm())
    assert abs(v.norms[1] - 1) < 1e-5
    v.save(tmp_path / "vec")
    assert type(v).load(tmp_path / "vec").extra["sae"][0]["feature_ids"] == rec["feature_ids"]


def test_sae_width_mismatch_and_bad_spec(tmp_path):
    tok = bytelevel_tokenizer()
    model = tiny_llama(tok, n_layers=2)
    sents = load_corpus("counting", n=8)
    wrong = _planted_sae(16, 8, torch.nn.functional.normalize(torch.ones(16), dim=0), feature=0)
    with pytest.raises(VectorMismatchError, match="16"):
        extract(model, tok, sents, methods=("sae",), saes={0: wrong}, progress=False)
    with pytest.raises(DataError, match="cannot load an SAE"):
        load_sae(12345)


def test_gemma_scope_ids():
    assert gemma_scope_sae_id(5) == ("gemma-scope-2b-pt-res-canonical", "layer_5/width_16k/canonical")


def test_sae_vector_direct_api():
    from steerkit.vectors.activations import Activations

    d = 8
    u = torch.nn.functional.normalize(torch.arange(1.0, d + 1), dim=0)
    sae = _planted_sae(d, 12, u, feature=4)
    is_anchor = torch.tensor([True, False] * 20)
    hidden = torch.randn(1, 40, d) * 0.1
    hidden[0, is_anchor] += 2 * u
    acts = Activations(hidden, [3], is_anchor, torch.arange(40) // 2, torch.zeros(40, dtype=torch.long), 6, d,
                       "toy", "synthetic", "h")
    v = sae_vector(acts, {3: sae}, top_k=1, progress=False)
    torch.testing.assert_close(v[3], u)
    assert v.extra["sae"][0]["feature_ids"] == [4]

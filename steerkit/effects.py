"""Look inside one steered forward pass: what changed, where, and by how much.

Example:
    >>> df = position_effects(model, processor, image, "How many circles?", vector, layer=1, alpha=4.0)
    >>> plot_position_effects(df).show()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from steerkit.models.adapters import adapter_for
from steerkit.steer import steer, token_masks


@torch.no_grad()
def position_effects(
    model: Any,
    processor: Any,
    image: Any,
    prompt: str,
    vector: Mapping[int, torch.Tensor] | torch.Tensor,
    layer: int,
    alpha: float = 1.0,
    scopes: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Per-position change of the final hidden state and of the logits when steering ``layer`` in each scope.

    ``scopes`` defaults to image, text and both with an image, and to text and both without one (the image scope
    would select nothing, which :func:`steerkit.steer` refuses).

    Returns one row per (scope, position): token, kind (image/text/special/pad), whether the position was
    steered, ``hidden_delta`` (L2 norm of the change of the last layer's output) and ``logit_delta`` (L2 norm of
    the change of the logits). Steering at one position moves later positions too, through attention.
    """
    if scopes is None:
        scopes = ("text", "both") if image is None else ("image", "text", "both")
    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    inputs = adapter.build_inputs(processor, [prompt], None if image is None else [image],
                                  device=next(model.parameters()).device)
    base = model(**inputs, output_hidden_states=True)
    ids = inputs["input_ids"]
    masks = token_masks(ids, inputs.get("attention_mask"), adapter.image_token_id(model),
                        adapter.special_ids(processor, model))
    kind = ["pad"] * ids.shape[1]
    for i in range(ids.shape[1]):
        if masks["image"][0, i]:
            kind[i] = "image"
        elif masks["text"][0, i]:
            kind[i] = "text"
        elif inputs["attention_mask"][0, i]:
            kind[i] = "special"
    tokens = tok.convert_ids_to_tokens(ids[0].tolist())
    rows = []
    for scope in scopes:
        with steer(model, vector, layers=[layer], alpha=alpha, tokens=scope) as handle:  # type: ignore[arg-type]
            out = model(**inputs, output_hidden_states=True)
        steered = handle.last_mask[0] if handle.last_mask is not None else torch.zeros_like(ids[0], dtype=torch.bool)
        dh = (out.hidden_states[-1][0] - base.hidden_states[-1][0]).float().norm(dim=-1)
        dl = (out.logits[0] - base.logits[0]).float().norm(dim=-1)
        for i in range(ids.shape[1]):
            rows.append(dict(scope=scope, position=i, token=tokens[i], kind=kind[i], steered=bool(steered[i]),
                             hidden_delta=float(dh[i]), logit_delta=float(dl[i])))
    return pd.DataFrame(rows)


def plot_position_effects(df: pd.DataFrame, value: str = "logit_delta") -> Any:
    """A plotly bar chart per scope: ``value`` by position, coloured by token kind, steered positions outlined."""
    import plotly.express as px

    fig = px.bar(df, x="position", y=value, color="kind", facet_row="scope", hover_data=["token", "steered"],
                 color_discrete_map={"image": "#636efa", "text": "#ef553b", "special": "#7f7f7f", "pad": "#cccccc"},
                 title=f"{value.replace('_', ' ')} per position, by steering scope")
    fig.update_layout(height=220 * df["scope"].nunique() + 80, bargap=0.1)
    return fig


@torch.no_grad()
def word_direction(model: Any, processor: Any, word_a: str, word_b: str, layer: int) -> torch.Tensor:
    """Layer-``layer`` activation of ``word_a`` minus that of ``word_b`` in the text backbone (one-pair MeanShift).

    Each word is read alone (no special tokens); multi-token words are averaged over their tokens.
    """
    adapter = adapter_for(model)
    backbone = adapter.text_backbone(model)
    tok = adapter.tokenizer(processor)
    device = next(model.parameters()).device

    def act(word: str) -> torch.Tensor:
        ids = tok(word, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
        return backbone(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1][0].mean(0).float()

    return act(word_a) - act(word_b)


def demo_input(model_name: str, seed: int = 0) -> tuple[Any, str, tuple[str, str]]:
    """An (image, prompt, contrasting word pair) suited to ``model_name`` for demonstrations.

    A model with a profile (:mod:`steerkit.models.profiles`, e.g. the organism) gets its profile's demonstration
    (one of its own held-out spatial-relation questions); other models a random image and a generic left/right
    question.
    """
    from steerkit.models.profiles import find_profile

    profile = find_profile(model_name)
    if profile is not None:
        return profile.demo(seed)
    from steerkit.models.tiny import tiny_image

    return tiny_image(seed), "Is the red circle to the left or to the right of the blue square?", ("left", "right")

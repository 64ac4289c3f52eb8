"""Model profiles: an embedded model that steerkit trains and ships, with everything that differs about it.

A profile carries what generic code must not hard-code about one model: how to load the MLLM and its text-only
LM (the source of steering vectors), which multiple-choice items it was trained to answer and how to draw held-out
ones, its arithmetic problems for the gap harness and the prompts/renderer they are asked with, a demonstration
input, and the held-out evaluation that produced its shipped metrics. ``load_model``, ``load_text_model``,
``steerkit.gap.problem_set``/``style_for``, the sweep config's item source and ``steerkit.effects.demo_input``
look a name up here; none of them branches on a model's name.

Each profile is registered by the name ``load_model`` accepts and the dotted path of the object that defines it,
imported on first use (so importing steerkit does not import every organism). A second organism is one more
entry in :data:`REGISTRY` (or a :func:`register_profile` call) and one ``ModelProfile`` in its own package.

Example:
    >>> prof = get_profile("steerkit/organism")
    >>> prof.text_name
    'steerkit/organism-text'
    >>> items = prof.items("Relation", 8, seed=0, mode="image", split="test")
    >>> problems = prof.problems(20, seed=0, split="test")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from steerkit.errors import DataError

DEFAULT_MODEL = "steerkit/organism"  # the embedded default every command and notebook runs on

# load_model name -> its ModelProfile, or the "module:attribute" defining it (imported on first use, then kept).
REGISTRY: dict[str, str | ModelProfile] = {
    "steerkit/organism": "steerkit.models.organism.profile:PROFILE",
    "steerkit/organism-smol": "steerkit.models.organism_smol.profile:PROFILE",
}


@dataclass(frozen=True)
class ModelProfile:
    """What one embedded model needs from generic code.

    Attributes:
        name: the ``load_model`` name of the MLLM (e.g. ``"steerkit/organism"``).
        text_name: the ``load_model``/``load_text_model`` name of its text-only LM.
        source: the short name that item and problem ``source`` fields and configs use (e.g. ``"organism"``).
        load: ``(path=None) -> (model, processor)``; the MLLM in eval mode.
        load_text: ``(path=None) -> (model, tokenizer)``; the text-only LM in eval mode.
        tasks: the multiple-choice tasks its items cover.
        items: ``(task, n, *, seed, mode, split) -> list[Item]``; ``mode`` is ``"image"`` or ``"text"``.
        problems: ``(n, *, seed, split) -> list[TextProblem]`` for the gap harness, or None.
        prompt_style: ``() -> PromptStyle`` the problems are asked with (its prompts and renderer), or None.
        demo: ``(seed) -> (image, prompt, (word_a, word_b))``, an input it was built for and a contrasting pair.
        evaluate: ``(path=None, n=None) -> DataFrame``; re-measures a build on its held-out sets.
        item_modes: the item modes it answers (``"image"``, ``"text"``).
    """

    name: str
    text_name: str
    source: str
    load: Callable[..., tuple[Any, Any]]
    load_text: Callable[..., tuple[Any, Any]]
    tasks: tuple[str, ...]
    items: Callable[..., list[Any]]
    demo: Callable[[int], tuple[Any, str, tuple[str, str]]]
    problems: Callable[..., list[Any]] | None = None
    prompt_style: Callable[[], Any] | None = None
    evaluate: Callable[..., Any] | None = None
    item_modes: tuple[str, ...] = ("image", "text")

    def names(self) -> tuple[str, ...]:
        """Every name this profile answers to: the MLLM, the text LM and the short source name."""
        return (self.name, self.text_name, self.source)

    def make_items(self, tasks: Sequence[str], n: int, *, seed: int = 0, mode: str = "image",
                   split: str = "test") -> list[Any]:
        """``n`` items per task for ``tasks``, checked against :attr:`tasks` and :attr:`item_modes`."""
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise DataError(f"{self.name} has no items for tasks {unknown}; choose from {list(self.tasks)}")
        if mode not in self.item_modes:
            raise DataError(f"{self.name} items come in modes {list(self.item_modes)}, not {mode!r}")
        return [it for t in tasks for it in self.items(t, n, seed=seed, mode=mode, split=split)]


def register_profile(name: str, target: str | ModelProfile, *, override: bool = False) -> None:
    """Register a profile under its ``load_model`` name: a ``ModelProfile`` or the ``"module:attr"`` defining it.

    Example:
        >>> register_profile("myorg/organism-2", "myorg.organism2:PROFILE")
    """
    if name in REGISTRY and not override:
        raise DataError(f"a profile named {name!r} is registered already; pass override=True to replace it")
    REGISTRY[name] = target


def _load(name: str) -> ModelProfile:
    target = REGISTRY[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return target


def profile_names() -> list[str]:
    """The registered profiles' ``load_model`` names."""
    return sorted(REGISTRY)


def find_profile(name: str | None) -> ModelProfile | None:
    """The profile that ``name`` designates (its MLLM, text LM or short source name), or None.

    Only registered names resolve: a hub id or a folder is never mistaken for a profile.
    """
    if not name:
        return None
    for key in REGISTRY:
        prof = _load(key)
        if name in prof.names():
            return prof
    return None


def get_profile(name: str) -> ModelProfile:
    """Like :func:`find_profile`, but an unknown name raises :class:`DataError` listing the known ones."""
    prof = find_profile(name)
    if prof is None:
        known = [n for key in REGISTRY for n in _load(key).names()]
        raise DataError(f"no model profile named {name!r}; known: {known} (register one with register_profile)")
    return prof

"""The organism's :class:`~steerkit.models.profiles.ModelProfile`: everything generic code needs to know about it.

What differs from other models lives here and nowhere else: its load functions, its scene items, its two-digit
additions as gap problems, the prompts it was trained on with its one-character-per-cell renderer, a demonstration
question and the re-measurement of its shipped metrics.

Example:
    >>> from steerkit.models.profiles import get_profile
    >>> prof = get_profile("steerkit/organism")
    >>> prof.problems(2, seed=0, split="test")[0].source
    'organism'
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from steerkit.models.organism import world
from steerkit.models.profiles import ModelProfile

NAME = "steerkit/organism"
TEXT_NAME = "steerkit/organism-text"
SOURCE = "organism"
TRAIN_GLYPH = 15  # the training glyph size in its 16-pixel cells


def text_problems(n: int, *, seed: int = 0, split: str = "test", source: str = SOURCE) -> list[Any]:
    """The organism's two-digit additions as gap :class:`~steerkit.gap.problems.TextProblem`.

    ``extra`` keeps its fields: ``trace`` (its chain of thought ending in ``<answer>``), ``text_prompt`` and
    ``image_prompt`` (the prompts it was trained on), ``a``, ``b`` and ``split``. Train and test problems are
    disjoint by construction (:func:`steerkit.models.organism.world.arithmetic_problems`). ``source`` names the
    profile they are asked of (another organism of the same world re-sources them to get its own prompt style).

    Example:
        >>> text_problems(2, seed=0)[0].question  # "a+b", two-digit operands
        '69+29'
    """
    from steerkit.gap.problems import TextProblem

    return [TextProblem(question=r["question"], answer=str(r["answer"]), id=str(r["id"]), source=source,
                        extra={k: v for k, v in r.items() if k not in ("question", "answer", "id")} | {"split": split})
            for r in world.arithmetic_problems(n, seed=seed, split=split)]


def prompt_style() -> Any:
    """The gap :class:`~steerkit.gap.modes.PromptStyle` of the organism: its trained prompts and renderer.

    ``text`` asks "... Compute 47+38 .", ``instruction_image`` gives the rendered sum with "... Compute the sum in
    the image .", ``image`` gives the rendered sum with an empty prompt (the whole instruction does not fit the
    16-cell canvas, and it was never trained on that form). It has no OCR prompts (it was never trained to
    transcribe), so the OCR modes are unavailable. The :class:`~steerkit.render.RenderConfig` fields used are
    ``font``, ``size`` (relative to the generic default: 32 gives the training glyph size 15 px, 16 gives 8 px),
    ``invert``, ``jitter`` and ``scale`` (down-sampling before the processor).
    """
    from steerkit.gap.modes import PromptStyle
    from steerkit.render.text_image import RenderConfig

    default_size = RenderConfig().size

    def render(text: str, cfg: RenderConfig, seed: Any) -> Image.Image:
        size = max(4, round(TRAIN_GLYPH * cfg.size / default_size))
        img = world.render_arithmetic(text, font=cfg.font, seed=seed, size=size, jitter=cfg.jitter)
        if cfg.invert:
            img = Image.eval(img, lambda v: 255 - v)
        if cfg.scale != 1.0:
            img = img.resize((max(1, round(img.width * cfg.scale)), max(1, round(img.height * cfg.scale))),
                             Image.Resampling.LANCZOS)
        return img

    return PromptStyle(name=SOURCE, instruction=world.ARITH_IMAGE_PROMPT,
                       text_template=world.ARITH_TEXT_PROMPT.replace("{q}", "{question}"),
                       image_render_template="{question}", image_prompt="", instruction_image_prompt="{instruction}",
                       renderer=render)


def demo(seed: int = 0) -> tuple[Any, str, tuple[str, str]]:
    """One held-out spatial-relation question (image, prompt) and the contrasting words ``("left", "right")``."""
    item = world.world_items("Relation", 1, seed=seed, mode="image")[0]
    return item.image, item.prompt, ("left", "right")


def _load(path: Any = None) -> tuple[Any, Any]:
    from steerkit.models.organism import load

    return load(path)


def _load_text(path: Any = None) -> tuple[Any, Any]:
    from steerkit.models.organism import load_text_lm

    return load_text_lm(path)


def _evaluate(path: Any = None, n: int | None = None) -> Any:
    from steerkit.models.organism import remeasure

    return remeasure(path, n)


PROFILE = ModelProfile(
    name=NAME, text_name=TEXT_NAME, source=SOURCE, load=_load, load_text=_load_text, tasks=world.TASKS,
    items=world.world_items, demo=demo, problems=text_problems, prompt_style=prompt_style, evaluate=_evaluate,
)

"""The five input modes of the modality-gap protocol, and the harness that runs them on the same items.

Modes ("Reading, Not Thinking", arXiv 2603.09095):

- ``text``: instruction and problem as text (no image).
- ``image``: everything rendered (instruction + problem in the picture); the text prompt is empty.
- ``instruction_image``: the instruction as text, the problem as pixels.
- ``ocr_1p``: one pass; the model is asked to transcribe the problem into ``<transcript>...</transcript>`` and
  then solve it, in the same answer.
- ``ocr_2p``: two passes; first a transcription, then that transcript is fed back as text in the ``text`` mode
  prompt (no image in pass 2).

Beyond the paper's five (:data:`EXTRA_MODES`, all of them in :data:`ALL_MODES`):

- ``ocr_external``: like ``ocr_2p``, but pass 1 is a dedicated OCR engine (:mod:`steerkit.gap.ocr`, RapidOCR by
  default) reading the same rendered problem as ``ocr_2p``'s first pass; its transcript is the question of the
  ``text`` prompt. Set next to ``ocr_2p``, it separates the MLLM's own reading from a dedicated OCR model's.

How prompts read and how problems become pixels is a :class:`PromptStyle`: :data:`GENERIC` (GSM8K and the synthetic
word problems, rendered with :func:`steerkit.render.render_text`) or a model profile's own style (the organism's
trained prompts and its one-character-per-cell renderer; it has no OCR prompts, so ``ocr_1p`` and ``ocr_2p``
are unavailable there, while ``ocr_external`` needs only its renderer and text prompt), which :func:`style_for`
picks from the problems' source.
Requesting a mode a style cannot express raises :class:`~steerkit.errors.GapError`.

Example:
    >>> df = run_gap(model, processor, word_problems(20), modes=MODES, max_new_tokens=256)
    >>> gap_report(df)   # steerkit.gap.report
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from steerkit.errors import GapError
from steerkit.gap.ocr import OcrEngine, engine_name
from steerkit.gap.parse import answers_match, parse_number, parse_transcript
from steerkit.gap.problems import TextProblem
from steerkit.render.text_image import RenderConfig, render_text

if TYPE_CHECKING:
    from steerkit.gap.steered import GapSteer

MODES: tuple[str, ...] = ("text", "image", "instruction_image", "ocr_1p", "ocr_2p")
"""The paper's five modes (what ``run_gap`` runs by default)."""
EXTRA_MODES: tuple[str, ...] = ("ocr_external",)
"""Modes beyond the paper's: a dedicated OCR engine's transcript as the text question."""
ALL_MODES: tuple[str, ...] = MODES + EXTRA_MODES
"""Every mode, in report and plot order."""
IMAGE_MODES: tuple[str, ...] = MODES[1:]
MODE_LABELS: dict[str, str] = {"text": "Text", "image": "Image", "instruction_image": "Instr.+Image",
                               "ocr_1p": "OCR 1-pass", "ocr_2p": "OCR 2-pass", "ocr_external": "External OCR"}

Renderer = Callable[[str, RenderConfig, Any], Image.Image]


def _render_generic(text: str, cfg: RenderConfig, seed: Any) -> Image.Image:
    return render_text(text, cfg, seed=seed)


@dataclass(frozen=True)
class PromptStyle:
    """How a problem reads in each mode, and how text becomes pixels.

    Templates use ``{instruction}`` and ``{question}``. A mode whose template is None is not available.

    Attributes:
        name: style name (recorded in results).
        instruction: the task instruction (asks for ``<answer>...</answer>``).
        text_template: the ``text`` mode prompt (and the ``ocr_2p`` / ``ocr_external`` second pass, with the
            transcript as question).
        image_render_template: what the ``image`` mode renders; its text prompt is ``image_prompt``.
        image_prompt: the text prompt that goes with the fully rendered image (empty by default).
        instruction_image_prompt: the ``instruction_image`` text prompt (the problem is rendered alone).
        ocr_1p_prompt: one-pass transcribe-then-solve prompt.
        ocr_2p_transcribe_prompt: the first pass of ``ocr_2p``.
        renderer: ``(text, RenderConfig, seed) -> PIL image`` (``ocr_external`` needs only this and
            ``text_template``, so every style supports it).
    """

    name: str
    instruction: str
    text_template: str = "{instruction}\n\n{question}"
    image_render_template: str | None = "{instruction}\n\n{question}"
    image_prompt: str = ""
    instruction_image_prompt: str | None = "{instruction}"
    ocr_1p_prompt: str | None = None
    ocr_2p_transcribe_prompt: str | None = None
    renderer: Renderer = field(default=_render_generic, compare=False)

    def supports(self, mode: str) -> bool:
        """Whether this style can express ``mode``."""
        return {"text": True, "image": self.image_render_template is not None,
                "instruction_image": self.instruction_image_prompt is not None,
                "ocr_1p": self.ocr_1p_prompt is not None,
                "ocr_2p": self.ocr_2p_transcribe_prompt is not None,
                "ocr_external": True}[mode]

    def fill(self, template: str, question: str) -> str:
        """A template with the instruction and question filled in."""
        return template.format(instruction=self.instruction, question=question)


GENERIC = PromptStyle(
    name="generic",
    instruction="Solve the following math problem. Think step by step, then give the final answer as a number "
                "inside <answer></answer> tags.",
    ocr_1p_prompt="The image shows a math problem. First transcribe it exactly inside <transcript></transcript> "
                  "tags. Then solve it step by step and give the final answer as a number inside <answer></answer> "
                  "tags.",
    ocr_2p_transcribe_prompt="Transcribe the text in the image exactly, inside <transcript></transcript> tags.",
)


def style_for(problems: Sequence[TextProblem]) -> PromptStyle:
    """The default style for a problem list: its model profile's style when every problem comes from a registered
    profile's source (:mod:`steerkit.models.profiles`, e.g. the organism's additions), else :data:`GENERIC`.

    Example:
        >>> style_for(problem_set("organism", 5)).name
        'organism'
    """
    from steerkit.models.profiles import find_profile

    sources = {p.source for p in problems}
    owned = {s: find_profile(s) for s in sources}
    owned = {s: prof for s, prof in owned.items() if prof is not None and prof.prompt_style is not None}
    if not owned:
        return GENERIC
    if len(sources) > 1:
        raise GapError(f"problems mix sources {sorted(sources)}; {sorted(owned)} problems need their model's own "
                       "prompt style: run each source separately")
    return next(iter(owned.values())).prompt_style()


@dataclass(frozen=True)
class ModeInput:
    """The model input of one (problem, mode): a text prompt and an optional image."""

    prompt: str
    image: Image.Image | None


def mode_input(problem: TextProblem, mode: str, style: PromptStyle, render: RenderConfig | None = None,
               seed: Any = None) -> ModeInput:
    """The (prompt, image) of ``problem`` in ``mode`` (for ``ocr_2p``: the first, transcription pass; for
    ``ocr_external``: the image the OCR engine reads, the problem rendered alone as in ``ocr_2p``, with an empty
    prompt).

    The rendering seed defaults to the problem id, so an item's image never depends on the rest of the batch.

    Example:
        >>> mode_input(word_problems(1)[0], "instruction_image", GENERIC).image.size
        (1280, 720)
    """
    if mode not in ALL_MODES:
        raise GapError(f"unknown mode {mode!r}; choose from {list(ALL_MODES)}")
    if not style.supports(mode):
        raise GapError(f"prompt style {style.name!r} has no {mode!r} prompt; drop the mode or give the style a "
                       f"template for it (dataclasses.replace(style, ...))")
    cfg = render or RenderConfig()
    seed = problem.id if seed is None else seed
    q = problem.question
    if mode == "text":
        return ModeInput(style.fill(style.text_template, q), None)
    if mode == "image":
        return ModeInput(style.image_prompt, style.renderer(style.fill(style.image_render_template, q), cfg, seed))
    image = style.renderer(q, cfg, seed)
    if mode == "instruction_image":
        return ModeInput(style.fill(style.instruction_image_prompt, q), image)
    if mode == "ocr_1p":
        return ModeInput(style.fill(style.ocr_1p_prompt, q), image)
    if mode == "ocr_external":
        return ModeInput("", image)
    return ModeInput(style.fill(style.ocr_2p_transcribe_prompt, q), image)


def _generate(model: Any, processor: Any, inputs: Sequence[ModeInput], gen: dict[str, Any],
              steer: GapSteer | None = None) -> list[str]:
    from steerkit.models.generation import generate_text

    images = [x.image for x in inputs]
    has = {im is not None for im in images}
    if len(has) > 1:
        raise GapError("a batch mixes text-only and image inputs; generate them separately")
    with_images = has == {True}
    # steer()'s hooks leave with the context, whatever ends it (an exception mid-generation included).
    with nullcontext() if steer is None else steer.applied(model, with_images):
        return generate_text(model, processor, [x.prompt for x in inputs], images if with_images else None, **gen)


def _ocr_engine(engine: OcrEngine | None) -> OcrEngine:
    if engine is None:
        from steerkit.gap.ocr import default_engine

        return default_engine()
    if not callable(engine):
        raise GapError(f"ocr_engine must be a callable image -> str, got {type(engine).__name__}; pass e.g. "
                       "steerkit.gap.ocr.RapidOcrEngine()")
    return engine


def _transcribe(engine: OcrEngine, image: Image.Image) -> str:
    text = engine(image)
    if not isinstance(text, str):
        raise GapError(f"OCR engine {engine_name(engine)!r} returned {type(text).__name__}, not str; an "
                       "ocr_engine must map a PIL image to its transcript")
    return text


def run_gap(
    model: Any,
    processor: Any,
    problems: Sequence[TextProblem],
    *,
    modes: Sequence[str] = MODES,
    style: PromptStyle | None = None,
    render: RenderConfig | None = None,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 8,
    skip_unsupported: bool = False,
    model_name: str | None = None,
    ocr_engine: OcrEngine | None = None,
    steer: GapSteer | None = None,
) -> pd.DataFrame:
    """Run every mode on the same problems; one row per (item, mode).

    Columns: item_id, source, mode, question, gold, prompt, response, answer (parsed value), parse_method,
    format_ok, correct, transcript (OCR modes), ocr_engine (``ocr_external``), response_chars, response_words,
    style, font, size, scale, invert, temperature, model. Generation goes through
    :func:`steerkit.models.generation.generate_text`. ``skip_unsupported`` drops modes the style cannot express
    instead of raising.

    ``ocr_engine`` (any callable ``image -> str``; default: the shared
    :func:`steerkit.gap.ocr.default_engine`, RapidOCR) transcribes the rendered problems of ``ocr_external``; its
    transcript fills the ``transcript`` column as ``ocr_2p``'s does, so :func:`steerkit.gap.taxonomy.tag_errors`
    tags its errors the same way, and the ``prompt`` column holds the text prompt built from it.

    ``steer`` (a :class:`steerkit.gap.steered.GapSteer`, one steering condition) steers every model generation of
    every mode through :func:`steerkit.steer.steer`: both passes of ``ocr_2p``, the text pass of ``ocr_external``
    (scope ``"image"`` leaves text-only generations unsteered: they have no image positions). Rows record it in
    ``steer_name, steer_layer, steer_alpha, steer_scope, steer_when, steer_applied`` (None / NA / NaN / False
    with ``steer=None``, whose rows are otherwise those of an unsteered run). To compare conditions, use
    :func:`steerkit.gap.steered.run_gap_steered` and :func:`~steerkit.gap.steered.gap_effects`.

    Example:
        >>> df = run_gap(model, processor, problem_set("organism", 50), modes=["text", "instruction_image"])
        >>> df = run_gap(model, processor, word_problems(50), modes=["text", "ocr_2p", "ocr_external"])
        >>> df = run_gap(model, processor, probs, steer=GapSteer(vector, layer=2, alpha=1.0, scope="image"))
    """
    from steerkit.gap.steered import GapSteer, steer_dtypes, unsteered_columns

    if steer is not None and not isinstance(steer, GapSteer):
        raise GapError(f"steer must be a steerkit.gap.steered.GapSteer (or None), got {type(steer).__name__}; "
                       "wrap the vector as GapSteer(vector, layer, alpha, scope=...)")
    problems = list(problems)
    style = style or style_for(problems)
    cfg = render or RenderConfig()
    unsupported = [m for m in modes if m not in ALL_MODES or not style.supports(m)]
    if unsupported and not skip_unsupported:
        mode_input(problems[0], unsupported[0], style, cfg)  # raises the explanatory error
    modes = [m for m in modes if m not in unsupported]
    engine = _ocr_engine(ocr_engine) if "ocr_external" in modes else None  # a missing engine fails before any run
    gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=batch_size)
    rows: list[dict[str, Any]] = []
    for mode in tqdm(modes, desc="gap modes", leave=False):
        inputs = [mode_input(p, mode, style, cfg) for p in problems]
        transcripts: list[str | None] = [None] * len(problems)
        if mode == "ocr_external":
            # Pass 1 is the OCR engine on the rendered problem; the model only sees the text prompt built from it.
            transcripts = [_transcribe(engine, x.image) for x in tqdm(inputs, desc="external OCR", leave=False)]
            inputs = [ModeInput(style.fill(style.text_template, t), None) for t in transcripts]
        responses = _generate(model, processor, inputs, gen, steer)
        final = responses
        steered = steer is not None and steer.applies(any(x.image is not None for x in inputs))
        if mode in ("ocr_1p", "ocr_2p"):
            transcripts = [parse_transcript(r) for r in responses]
        if mode == "ocr_2p":
            # Pass 1 may forget the tags: then the whole response is taken as the transcript.
            transcripts = [t if t is not None else r.strip() for t, r in zip(transcripts, responses)]
            second = [ModeInput(style.fill(style.text_template, t), None) for t in transcripts]
            final = _generate(model, processor, second, gen, steer)
            steered = steered or (steer is not None and steer.applies(False))
        steer_cols = unsteered_columns() if steer is None else steer.columns(steered)
        for p, inp, first, resp, tr in zip(problems, inputs, responses, final, transcripts):
            parsed = parse_number(resp)
            rows.append(dict(
                item_id=p.id, source=p.source, mode=mode, question=p.question, gold=p.answer, prompt=inp.prompt,
                response=resp, pass1_response=first if mode == "ocr_2p" else None, answer=parsed.value,
                parse_method=parsed.method, format_ok=parsed.format_ok, correct=answers_match(parsed.value, p.answer),
                transcript=tr, ocr_engine=engine_name(engine) if mode == "ocr_external" else None,
                response_chars=len(resp), response_words=len(resp.split()), style=style.name,
                font=cfg.font if mode != "text" else None, size=cfg.size if mode != "text" else None,
                scale=cfg.scale if mode != "text" else None, invert=cfg.invert if mode != "text" else None,
                temperature=temperature, model=model_name or getattr(model.config, "_name_or_path", "") or
                type(model).__name__,
                **steer_cols,
            ))
    return steer_dtypes(pd.DataFrame(rows))


def sweep_render(
    model: Any,
    processor: Any,
    problems: Sequence[TextProblem],
    configs: Sequence[RenderConfig],
    *,
    modes: Sequence[str] = ("instruction_image",),
    style: PromptStyle | None = None,
    include_text: bool = True,
    **kwargs: Any,
) -> pd.DataFrame:
    """Run image modes under several render configurations (fonts, sizes, resolutions, inversion).

    Text mode (which no render setting touches) runs once when ``include_text``. Each row records its font, size,
    scale and invert, and ``config`` names the configuration ("caveat/32/x0.5").

    Example:
        >>> cfgs = [RenderConfig(font=f) for f in ("noto-sans", "caveat")]
        >>> df = sweep_render(model, processor, probs, cfgs)
    """
    style = style or style_for(problems)
    parts = []
    if include_text:
        t = run_gap(model, processor, problems, modes=["text"], style=style, **kwargs)
        parts.append(t.assign(config="text"))
    for cfg in tqdm(configs, desc="render configs"):
        df = run_gap(model, processor, problems, modes=[m for m in modes if m != "text"], style=style, render=cfg,
                     **kwargs)
        name = f"{cfg.font}/{cfg.size}/x{cfg.scale:g}" + ("/inv" if cfg.invert else "")
        parts.append(df.assign(config=name))
    return pd.concat(parts, ignore_index=True)


def run_dir(root: str | Path, config: dict[str, Any]) -> Path:
    """The results folder ``<root>/gap-<hash12>`` of ``config``, named and recorded (``config.json``) by the
    sweeps' scheme, :func:`steerkit.sweep.store.run_folder`: a changed configuration never mixes rows, and a folder
    holding another configuration raises :class:`~steerkit.errors.StoreError`.
    """
    from steerkit.sweep.store import run_folder

    return run_folder(root, config, name="gap")


def save_results(df: pd.DataFrame, root: str | Path, config: dict[str, Any], name: str = "results") -> Path:
    """Write ``df`` as parquet into :func:`run_dir` (root, config) and return the file path."""
    path = run_dir(root, config) / f"{name}.parquet"
    df.to_parquet(path, index=False)
    return path

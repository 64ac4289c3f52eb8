"""steerkit.gap: the modality gap of text rendered as pixels (five modes + external OCR, reports, reading vs
thinking, steering inside the harness).

Example:
    >>> from steerkit.gap import run_gap, gap_report, word_problems
    >>> df = run_gap(model, processor, word_problems(20, seed=0))
    >>> gap_report(df)
"""

from steerkit.gap.modes import (
    ALL_MODES,
    EXTRA_MODES,
    GENERIC,
    IMAGE_MODES,
    MODE_LABELS,
    MODES,
    ModeInput,
    PromptStyle,
    mode_input,
    run_gap,
    save_results,
    style_for,
    sweep_render,
)
from steerkit.gap.ocr import OcrEngine, RapidOcrEngine
from steerkit.gap.parse import ParsedAnswer, answers_match, parse_number, parse_transcript
from steerkit.gap.problems import (
    TextProblem,
    load_gsm8k,
    problem_set,
    problems_frame,
    word_problems,
)
from steerkit.gap.report import compare_runs, gap_report, plot_before_after, plot_gap, plot_sweep
from steerkit.gap.steered import STEER_COLUMNS, UNSTEERED, GapSteer, gap_effects, run_gap_steered
from steerkit.gap.taxonomy import char_error_rate, error_shares, length_stats, tag_errors

__all__ = ["ALL_MODES", "EXTRA_MODES", "GENERIC", "IMAGE_MODES", "MODES", "MODE_LABELS", "STEER_COLUMNS", "UNSTEERED",
           "GapSteer", "ModeInput", "OcrEngine", "ParsedAnswer", "PromptStyle", "RapidOcrEngine", "TextProblem",
           "answers_match", "char_error_rate", "compare_runs", "error_shares", "gap_effects", "gap_report",
           "length_stats", "load_gsm8k", "mode_input", "parse_number", "parse_transcript", "plot_before_after",
           "plot_gap", "plot_sweep", "problem_set", "problems_frame", "run_gap", "run_gap_steered", "save_results",
           "style_for", "sweep_render", "tag_errors", "word_problems"]

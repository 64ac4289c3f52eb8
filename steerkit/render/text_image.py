"""Render text as an image: the "Pure Image" input of the modality-gap experiments.

Defaults follow "Reading, Not Thinking": a 1280 x 720 white canvas with black text. Knobs: font (a name from
:func:`steerkit.render.fonts.available_fonts`), size, canvas, margins, wrapping, line spacing, alignment,
inverted colours, and a resolution scale applied after layout (0.5 halves both sides of the final image, the
paper's resolution axis). Text the font cannot draw raises :class:`~steerkit.errors.RenderError`; text that does
not fit raises too unless ``fit="shrink"`` (the default), which lowers the font size step by step and records
the size used in ``image.info["steerkit_render"]``.

Rendering is deterministic: the only randomness is the optional per-line ``jitter``, drawn from an RNG seeded by
``seed``, so the same (text, config, seed) always gives the same pixels.

Example:
    >>> img = render_text("Janet has 3 apples.", RenderConfig(font="ibm-plex-mono", size=40, invert=True))
    >>> img.size
    (1280, 720)
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from steerkit.errors import RenderError
from steerkit.render.fonts import DEFAULT_FONT, check_coverage, load_font

# Typographic characters that many fonts lack, mapped to the ASCII a reader would see anyway.
_NORMALIZE = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2002": " ", "\u2003": " ",
    "\u2026": "...", "\u00d7": "x", "\u00f7": "/",
}


def normalize_text(text: str) -> str:
    """Replace typographic quotes, dashes, spaces, the ellipsis and x/÷ signs by ASCII; tabs by 4 spaces.

    Use it when a font lacks these glyphs and the experiment is about reading, not typography.

    Example:
        >>> normalize_text("Janet\u2019s ducks \u2014 16 eggs")
        "Janet's ducks - 16 eggs"
    """
    return "".join(_NORMALIZE.get(ch, ch) for ch in text).replace("\t", "    ").replace("\r\n", "\n")


@dataclass(frozen=True)
class RenderConfig:
    """How text becomes pixels.

    Attributes:
        font: registry name of the font (see ``available_fonts()``).
        size: font size in pixels on the unscaled canvas.
        canvas: (width, height) of the unscaled canvas.
        margins: (left, top, right, bottom) in pixels, or one int for all four.
        wrap: break lines at word boundaries to fit the width (explicit newlines are always kept).
        line_spacing: line height as a multiple of the font size.
        align: "left", "center" or "right".
        invert: white text on black instead of black on white.
        foreground / background: RGB colours (swapped by ``invert``).
        scale: resolution factor applied to the finished image (0.5 -> 640 x 360).
        fit: "shrink" lowers the size until the text fits (down to ``min_size``); "error" raises instead.
        min_size: smallest size ``fit="shrink"`` may use.
        jitter: maximum per-line offset in pixels (0 = none), drawn from the seeded RNG.
        normalize: apply :func:`normalize_text` before rendering (off by default: the text is rendered as given).
    """

    font: str = DEFAULT_FONT
    size: int = 32
    canvas: tuple[int, int] = (1280, 720)
    margins: int | tuple[int, int, int, int] = 48
    wrap: bool = True
    line_spacing: float = 1.35
    align: str = "left"
    invert: bool = False
    foreground: tuple[int, int, int] = (0, 0, 0)
    background: tuple[int, int, int] = (255, 255, 255)
    scale: float = 1.0
    fit: str = "shrink"
    min_size: int = 10
    jitter: int = 0
    normalize: bool = False

    def replace(self, **changes: Any) -> RenderConfig:
        """A copy with some fields changed (``cfg.replace(font="caveat")``)."""
        return dataclasses.replace(self, **changes)

    @property
    def margin_box(self) -> tuple[int, int, int, int]:
        """Margins as (left, top, right, bottom)."""
        m = self.margins
        return (m, m, m, m) if isinstance(m, int) else tuple(m)  # type: ignore[return-value]


def wrap_lines(text: str, font: Any, width: float, wrap: bool = True) -> list[str]:
    """Split ``text`` into lines no wider than ``width`` pixels in ``font`` (greedy word wrap).

    Explicit newlines are kept; a word wider than the line is broken between characters.
    """
    lines: list[str] = []
    for para in text.split("\n"):
        if not wrap:
            lines.append(para)
            continue
        words = para.split(" ")
        line = ""
        for word in words:
            candidate = word if not line else f"{line} {word}"
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            # A single word wider than the line: break it between characters.
            while word and font.getlength(word) > width:
                cut = 1
                while cut < len(word) and font.getlength(word[:cut + 1]) <= width:
                    cut += 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _layout(text: str, cfg: RenderConfig, size: int) -> tuple[list[str], Any, int, bool]:
    font = load_font(cfg.font, size)
    left, top, right, bottom = cfg.margin_box
    width, height = cfg.canvas[0] - left - right, cfg.canvas[1] - top - bottom
    if width <= 0 or height <= 0:
        raise RenderError(f"margins {cfg.margin_box} leave no room on a {cfg.canvas} canvas; reduce them")
    lines = wrap_lines(text, font, width, cfg.wrap)
    line_h = max(1, round(size * cfg.line_spacing))
    fits = len(lines) * line_h <= height + (line_h - size) and all(font.getlength(ln) <= width for ln in lines)
    return lines, font, line_h, fits


def render_text(text: str, config: RenderConfig | None = None, *, seed: int | str = 0, **overrides: Any) -> Image.Image:
    """Draw ``text`` on a canvas and return an RGB PIL image.

    Keyword overrides change single fields of ``config`` (``render_text(s, font="kalam", scale=0.5)``).
    Raises :class:`RenderError` when the font lacks a glyph of ``text`` (naming the character and font), or when
    the text cannot fit. ``image.info["steerkit_render"]`` records the font, the size used and the line count.

    Example:
        >>> render_text("What is 47 + 38?", size=48, seed=1).size
        (1280, 720)
    """
    cfg = (config or RenderConfig()).replace(**overrides) if overrides else (config or RenderConfig())
    if cfg.align not in ("left", "center", "right"):
        raise RenderError(f"align must be 'left', 'center' or 'right', got {cfg.align!r}")
    if cfg.fit not in ("shrink", "error"):
        raise RenderError(f"fit must be 'shrink' or 'error', got {cfg.fit!r}")
    if cfg.scale <= 0:
        raise RenderError(f"scale must be positive, got {cfg.scale}")
    if cfg.normalize:
        text = normalize_text(text)
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    check_coverage(text, cfg.font)

    size = cfg.size
    lines, font, line_h, fits = _layout(text, cfg, size)
    while not fits and cfg.fit == "shrink" and size > cfg.min_size:
        size = max(cfg.min_size, int(size * 0.9))
        lines, font, line_h, fits = _layout(text, cfg, size)
    if not fits:
        raise RenderError(
            f"{len(text)} characters do not fit a {cfg.canvas} canvas at size {size} ({len(lines)} lines); "
            "use a larger canvas, smaller margins or size, or fit='shrink' with a lower min_size"
        )

    fg, bg = (cfg.background, cfg.foreground) if cfg.invert else (cfg.foreground, cfg.background)
    img = Image.new("RGB", cfg.canvas, bg)
    draw = ImageDraw.Draw(img)
    left, top, right, _ = cfg.margin_box
    width = cfg.canvas[0] - left - right
    rng = random.Random(zlib.crc32(f"render|{seed}".encode()))
    y = top
    for line in lines:
        dx = dy = 0
        if cfg.jitter:
            dx, dy = rng.randint(-cfg.jitter, cfg.jitter), rng.randint(-cfg.jitter, cfg.jitter)
        w = font.getlength(line)
        x = left + {"left": 0.0, "center": (width - w) / 2, "right": width - w}[cfg.align]
        draw.text((x + dx, y + dy), line, fill=fg, font=font)
        y += line_h
    if cfg.scale != 1.0:
        new = (max(1, round(cfg.canvas[0] * cfg.scale)), max(1, round(cfg.canvas[1] * cfg.scale)))
        img = img.resize(new, Image.Resampling.LANCZOS)
    img.info["steerkit_render"] = {"font": cfg.font, "size": size, "requested_size": cfg.size,
                                   "lines": len(lines), "scale": cfg.scale, "invert": cfg.invert}
    return img


def font_sheet(text: str, fonts: list[str] | None = None, *, size: int = 28, width: int = 900,
               label_width: int = 220) -> Image.Image:
    """One image with ``text`` rendered in each font, labelled by font name (for notebooks and docs).

    Labels are drawn in the default font; each sample line uses its own font and the usual glyph check.

    Example:
        >>> font_sheet("Janet has 16 eggs.", ["noto-sans", "caveat"]).width
        900
    """
    from steerkit.render.fonts import available_fonts

    names = list(fonts or sorted(available_fonts()))
    row_h = int(size * 1.8)
    sheet = Image.new("RGB", (width, row_h * len(names)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    label_font = load_font(DEFAULT_FONT, max(10, size * 2 // 3))
    for i, name in enumerate(names):
        check_coverage(text, name)
        y = i * row_h + (row_h - size) // 2
        draw.text((8, y), name, fill=(110, 110, 110), font=label_font)
        draw.text((label_width, y), text, fill=(0, 0, 0), font=load_font(name, size))
    return sheet

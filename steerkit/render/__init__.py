"""steerkit.render: text as pixels, with packaged fonts and no silent glyph fallback.

Example:
    >>> from steerkit.render import render_text, available_fonts
    >>> img = render_text("What is 47 + 38?", font="ibm-plex-mono")
"""

from steerkit.render.fonts import (
    DEFAULT_FONT,
    FontSpec,
    available_fonts,
    check_coverage,
    font_spec,
    has_glyph,
    load_font,
    missing_glyphs,
    register_font,
)
from steerkit.render.text_image import RenderConfig, font_sheet, normalize_text, render_text, wrap_lines

__all__ = ["DEFAULT_FONT", "FontSpec", "RenderConfig", "available_fonts", "check_coverage", "font_spec",
           "font_sheet", "has_glyph", "load_font", "missing_glyphs", "normalize_text", "register_font", "render_text",
           "wrap_lines"]

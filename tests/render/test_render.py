"""Renderer: every packaged font draws, fonts differ, missing glyphs fail loudly, rendering is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from steerkit.errors import RenderError
from steerkit.render import RenderConfig, available_fonts, check_coverage, fonts, has_glyph, render_text

KNOWN = "Janet has 16 eggs. 47 + 38 = 85?"
EXPECTED = {"noto-sans", "noto-serif", "ibm-plex-mono", "roboto-mono", "caveat", "kalam", "indie-flower",
            "shadows-into-light"}


def _ink(img) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.int16)


def test_registry_has_every_fontpkg_wheel():
    names = set(available_fonts())
    assert EXPECTED <= names
    for name in EXPECTED:
        spec = available_fonts()[name]
        assert spec.path.is_file() and spec.source == "fontpkg"
    assert available_fonts()["ibm-plex-mono"].kind == "mono"
    assert available_fonts()["caveat"].kind == "handwriting"


@pytest.fixture(scope="module")
def renders():
    return {name: _ink(render_text(KNOWN, font=name, size=40)) for name in sorted(available_fonts())}


def test_every_font_renders_the_known_string(renders):
    for name, arr in renders.items():
        assert arr.shape == (720, 1280), name
        dark = (arr < 128).sum()
        assert dark > 500, f"{name} drew almost nothing ({dark} dark pixels)"
        # Text starts at the margins: nothing in the top-left margin corner.
        assert (arr[:40, :40] == 255).all(), name


def test_fonts_differ_pixelwise(renders):
    names = sorted(renders)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = (renders[a] != renders[b]).mean()
            assert diff > 0.001, f"{a} and {b} render identically ({diff:.5f} of pixels differ)"


def test_missing_glyph_raises_naming_char_and_font():
    assert not has_glyph("caveat", "∫")
    with pytest.raises(RenderError) as exc:
        render_text("area = ∫ f(x) dx", font="caveat")
    msg = str(exc.value)
    assert "'∫'" in msg and "U+222B" in msg and "'caveat'" in msg
    # ... and nothing is drawn with another font instead: the same text works where the glyph exists.
    assert has_glyph("ibm-plex-mono", "∫")
    render_text("area = ∫ f(x) dx", font="ibm-plex-mono")


def test_missing_glyph_without_fonttools(monkeypatch):
    """The PIL probe (used when fontTools is absent) agrees with the cmap on present and absent glyphs."""
    monkeypatch.setattr(fonts, "_cmap", lambda name: None)
    assert fonts.has_glyph("noto-sans", "A") and fonts.has_glyph("noto-sans", "€")
    assert not fonts.has_glyph("noto-sans", "∫")
    with pytest.raises(RenderError, match="U\\+222B"):
        check_coverage("∫", "noto-serif")


def test_unknown_font_lists_choices():
    with pytest.raises(RenderError, match="noto-sans"):
        render_text("x", font="comic-sans")


def test_same_seed_identical_and_jitter_seeded():
    cfg = RenderConfig(font="kalam", jitter=3)
    a = render_text(KNOWN, cfg, seed=7)
    b = render_text(KNOWN, cfg, seed=7)
    c = render_text(KNOWN, cfg, seed=8)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    # Without jitter the seed does not matter at all.
    assert render_text(KNOWN, seed=1).tobytes() == render_text(KNOWN, seed=2).tobytes()


def test_invert_scale_canvas_margins():
    base = _ink(render_text(KNOWN))
    inv = _ink(render_text(KNOWN, invert=True))
    assert np.abs((255 - base) - inv).max() <= 1
    half = render_text(KNOWN, scale=0.5)
    assert half.size == (640, 360)
    small = render_text("hi", canvas=(200, 100), margins=(10, 20, 10, 20), size=20)
    arr = _ink(small)
    assert small.size == (200, 100)
    ys, xs = np.nonzero(arr < 128)
    assert ys.min() >= 20 and xs.min() >= 10


def test_wrapping_and_fit():
    long = " ".join(["word"] * 200)
    img = render_text(long, size=40)
    info = img.info["steerkit_render"]
    assert info["lines"] > 1 and info["size"] < 40  # wrapped and shrunk to fit, and says so
    with pytest.raises(RenderError, match="do not fit"):
        render_text(long, size=40, fit="error")
    unwrapped = render_text("a b c", wrap=False, size=30)
    assert unwrapped.info["steerkit_render"]["lines"] == 1
    two = render_text("line one\nline two", size=30)
    assert two.info["steerkit_render"]["lines"] == 2


def test_normalize_makes_typography_renderable():
    text = "Janet\u2019s ducks \u2014 16 eggs"
    assert render_text(text, font="noto-sans", normalize=True).size == (1280, 720)
